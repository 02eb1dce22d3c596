#!/usr/bin/env bash
# The planner's filter and ranking as one CUDA graph (GraphedPost) against eager post-processing,
# on one lent H200 in one device call (~6 min; carry [".whl"], the cp312 wheels of
# bench/gpu_default_model.sh): the CUDA tests of the graphs and of post-processing, a profile of the
# bundled model's plan() (wall against GPU kernel time, launches, parity; with COMPILE=1 also a compiled
# denoiser in the loop's graph), the latency grid of both,
# and the development set's lift test through the graphed planner (48 views of unseen objects).
#   bash bench/gpu_post.sh        (MODEL, REPEATS, VIEWS, GRASPS env overrides, COMPILE=1 profiles a
#   compiled denoiser in the loop graph too; writes into $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}; R=${REPEATS:-20}
N=$(nproc); B=cuda_graph:tf32
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default
D=/tmp/sets/test  # the development set (split test, 48 scenes x 4 views, seed 101), composed in 4 processes
mkdir -p /tmp/sets; . bench/compose_sets.sh; compose_dev_shards /tmp/sets 4
python3 -m pytest -q -p no:cacheprovider test/test_infer_backends.py test/test_infer_postprocess.py -k "graph or select or budget or diverse" \
  2>&1 | tail -n 3
wait
python3 -c "from sceneleap_core.data.shards import write_manifest; write_manifest('$D', pattern='shard_*.h5')"
python3 bench/profile_plan.py --model "$M" --device cuda --backends $B:eager-post,$B${COMPILE:+,$B:compile} --oversample 8 --repeats "$R" \
  > "$OUT/profile_post.txt" 2>&1; sed -n '1,4p' "$OUT/profile_post.txt"
python3 bench/latency.py --model "$M" --device cuda --backends $B:eager-post,$B --samplers ddim:10 --grasps ${GRASPS:-32,128} \
  --points 20000 --oversample 2,8 --repeats "$R" --png "$OUT/latency_post.png" > "$OUT/latency_post.txt" 2>&1
grep -v "^wrote" "$OUT/latency_post.txt" | grep -A 12 "^backend" | cut -c1-170
python3 bench/results.py $D --model "$M" --views "${VIEWS:-48}" --grasps 32 --methods ddim:10 --device cuda --backend $B \
  --workers $((N - 1)) --out "$OUT/res" > "$OUT/results.log" 2>&1
tr '\r' '\n' < "$OUT/results.log" | grep -v "views:" | tail -n 6 | cut -c1-160
cp "$OUT/res/results.json" "$OUT/results_dev101_post_h200.json" 2>/dev/null; rm -rf "$OUT/res" "$OUT/results.log"
