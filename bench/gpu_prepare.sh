#!/usr/bin/env bash
# The cloud prepared on the GPU (GraspPlanner(prepare_on_device=...): torch at fixed shapes, one CUDA
# graph per input size, one host sync) against numpy on the host; the checks' dense pair search as
# one product (postprocess.within_radius); the bf16 loop with bfloat16 weights (cuda_graph.bf16_weights)
# against tf32. One lent H200, one device call (~7 min; carry [".whl"], the cp312 wheels of
# bench/gpu_default_model.sh): the CUDA tests of preprocessing, post-processing and the graphs; the
# call-by-call breakdown of an eager plan (GPU kernel time per call); a profile and the latency grid of
# the three; the development set's lift test through each (48 views of unseen objects).
#   bash bench/gpu_prepare.sh     (MODEL, REPEATS, VIEWS env overrides; writes into $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}; R=${REPEATS:-20}
N=$(nproc); B=cuda_graph:tf32; BACKENDS="$B:host-prepare,$B,cuda_graph:bf16"
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default
D=/tmp/sets/test  # the development set (split test, 48 scenes x 4 views, seed 101), composed in 4 processes
mkdir -p /tmp/sets; . bench/compose_sets.sh; compose_dev_shards /tmp/sets 4
python3 -m pytest -q -p no:cacheprovider test/test_infer_preprocess.py test/test_infer_postprocess.py test/test_infer_backends.py \
  -k "device or graph or select or budget or within or support or bf16 or precision" 2>&1 | tail -n 3
wait
python3 -c "from sceneleap_core.data.shards import write_manifest; write_manifest('$D', pattern='shard_*.h5')"
(cd bench && python3 plan_breakdown.py --model "../$M" --device cuda --repeats 10 --kernels 16) 2>&1 | grep -v -e USDT -e Warn -e _warn \
  > "$OUT/breakdown.txt"; sed -n '2,22p' "$OUT/breakdown.txt" | cut -c1-70
python3 bench/profile_plan.py --model "$M" --device cuda --backends $BACKENDS --oversample 8 --repeats 10 \
  > "$OUT/profile.txt" 2>&1; grep -A 4 "^backend" "$OUT/profile.txt" | cut -c1-190
python3 bench/latency.py --model "$M" --device cuda --backends $BACKENDS --samplers ddim:10 --grasps 32 \
  --points 20000,100000 --oversample 8 --repeats "$R" > "$OUT/latency.txt" 2>&1
grep -v "^wrote" "$OUT/latency.txt" | grep -A 12 "^backend" | cut -c1-170
for b in $B cuda_graph:bf16 $B:host-prepare; do
  python3 bench/results.py $D --model "$M" --views "${VIEWS:-48}" --grasps 32 --methods ddim:10 --device cuda --backend $b \
    --workers $((N - 1)) --out "$OUT/res" > "$OUT/results.log" 2>&1
  echo "$b"; tr '\r' '\n' < "$OUT/results.log" | grep "ddim:10" | tail -n 1 | cut -c1-160
  cp "$OUT/res/results.json" "$OUT/results_dev101_${b//:/_}_h200.json" 2>/dev/null; rm -rf "$OUT/res" "$OUT/results.log"
done
