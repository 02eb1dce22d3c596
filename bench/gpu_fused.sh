#!/usr/bin/env bash
# The checks' depth reductions as fused Triton kernels (sceneleap_core.geometry.box_depth,
# PostConfig.fused_depth: the collision check's hits, the ranking energy's penetration, finger
# clearance) against the budgeted pair searches they replace. One lent H200, one device call (~9 min;
# carry [".whl"]): the CUDA tests of the kernels, post-processing and backends (the AOTInductor test
# among them); bench/box_depth_ab.py (each call, both ways, same process); the call-by-call breakdown
# of an eager plan; the latency grid of pair searches / kernels / kernels + bf16 weights (/ a compiled
# denoiser in the loop graph with COMPILE=1); the development set's lift test through the new default.
#   bash bench/gpu_fused.sh     (MODEL, REPEATS, VIEWS, COMPILE env overrides; writes into $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}; R=${REPEATS:-20}
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
N=$(nproc --all); B=cuda_graph:tf32; BACKENDS="$B:unfused-depth,$B,cuda_graph:bf16"
[ "${COMPILE:-0}" = 1 ] && BACKENDS="$BACKENDS,$B:compile"
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default
D=/tmp/sets/test  # the development set (split test, 48 scenes x 4 views, seed 101), composed in 4 processes
mkdir -p /tmp/sets; . bench/compose_sets.sh; compose_dev_shards /tmp/sets 4
timeout 240 python3 -m pytest -q -p no:cacheprovider test/test_box_depth.py test/test_infer_postprocess.py \
  test/test_infer_backends.py 2>&1 | tail -n 4
wait
python3 -c "from sceneleap_core.data.shards import write_manifest; write_manifest('$D', pattern='shard_*.h5')"
(cd bench && python3 box_depth_ab.py --repeats 30) 2>&1 | tee "$OUT/box_depth_ab.txt" | tail -n 6
(cd bench && python3 plan_breakdown.py --model "../$M" --device cuda --repeats 10 --kernels 16) 2>&1 \
  | grep -v -e USDT -e Warn -e _warn > "$OUT/breakdown.txt"; sed -n '2,20p' "$OUT/breakdown.txt" | cut -c1-60
python3 bench/latency.py --model "$M" --device cuda --backends $BACKENDS --samplers ddim:10 --grasps 32 \
  --points 20000,100000 --oversample 8 --repeats "$R" > "$OUT/latency.txt" 2>&1
grep -v "^wrote" "$OUT/latency.txt" | grep -A 12 "^backend" | cut -c1-170
python3 bench/results.py $D --model "$M" --views "${VIEWS:-48}" --grasps 32 --methods ddim:10 --device cuda --backend $B \
  --workers $((N - 1)) --out "$OUT/res" > "$OUT/results.log" 2>&1
tr '\r' '\n' < "$OUT/results.log" | grep "ddim:10" | tail -n 1 | cut -c1-160
cp "$OUT/res/results.json" "$OUT/results_dev101_fused_h200.json" 2>/dev/null; rm -rf "$OUT/res" "$OUT/results.log"
