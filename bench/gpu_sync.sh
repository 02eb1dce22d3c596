#!/usr/bin/env bash
# The plan's host syncs and the GPU time they leave idle, on one lent H200 (carry [".whl"]; writes
# into $OUT; MODEL, REPEATS, VIEWS, BACKENDS, DEV_BACKENDS (the lift test's), TESTS (more test files) env overrides). One device call per mode, each under 10 minutes:
#   bash bench/gpu_sync.sh audit   the CUDA tests of the graphs, anchors, rotations, hand and
#                                  post-processing; the synchronizing calls per plan
#                                  (bench/sync_audit.py); the hand's kinematics with broadcast small
#                                  products vs cuBLAS (bench/hand_fk_ab.py); wall against GPU kernel
#                                  time per plan (bench/profile_plan.py); the latency of both backends
#   bash bench/gpu_sync.sh final   the CUDA tests of the kernels (greedy rounds, box depth) and the
#                                  post-processing; the latency grid (DDIM 10 / 8); wall against GPU
#                                  time; the development set's lift test through both backends
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}; R=${REPEATS:-30}
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
B=${BACKENDS:-cuda_graph:tf32,cuda_graph:bf16:compile}; N=$(nproc --all)
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default; D=/tmp/sets/test
profile() {
  (cd bench && python3 profile_plan.py --model "../$M" --device cuda --backends "$B" --repeats 20 --top 25) \
    > "$OUT/profile.txt" 2>&1; grep -A 3 "^backend" "$OUT/profile.txt" | cut -c1-170
}
latency() {  # $1: samplers
  python3 bench/latency.py --model "$M" --device cuda --backends "$B" --samplers "$1" --grasps 32 \
    --points 20000,100000 --repeats "$R" > "$OUT/latency.txt" 2>&1
  grep -v "^wrote" "$OUT/latency.txt" | grep -A 10 "^backend" | cut -c1-170
}
case "${1:-audit}" in
audit)
  timeout 200 python3 -m pytest -q -p no:cacheprovider -k "not aoti" test/test_infer_backends.py test/test_anchors.py \
    test/test_rotations.py test/test_hand_model.py test/test_infer_postprocess.py 2>&1 | tail -n 3
  python3 bench/sync_audit.py --model "$M" --backends "$B" 2>&1 | grep -v -i warn | tee "$OUT/sync_audit.txt" | cut -c1-200
  python3 bench/hand_fk_ab.py --model "$M" --repeats "$R" 2>&1 | tee "$OUT/hand_fk_ab.txt" | cut -c1-160
  profile; latency ddim:10 ;;
final)
  mkdir -p /tmp/sets; . bench/compose_sets.sh; compose_dev_shards /tmp/sets 4  # in the background
  timeout 150 python3 -m pytest -q -p no:cacheprovider test/test_greedy_select.py test/test_box_depth.py \
    test/test_infer_postprocess.py ${TESTS:-} 2>&1 | tail -n 2
  python3 bench/sync_audit.py --model "$M" --backends "$B" 2>&1 | grep -v -i warn | head -n 8 | cut -c1-160
  profile; latency ddim:10,ddim:8
  wait; $PY -c "from sceneleap_core.data.shards import write_manifest; write_manifest('$D', pattern='shard_*.h5')"
  for b in ${DEV_BACKENDS:-${B//,/ }}; do
    timeout 150 python3 bench/results.py $D --model "$M" --views "${VIEWS:-48}" --grasps 32 --methods ddim:10 \
      --device cuda --backend "$b" --workers $((N - 1)) --out "$OUT/res" > "$OUT/results.log" 2>&1
    echo "$b: $(tr '\r' '\n' < "$OUT/results.log" | grep "ddim:10" | tail -n 1 | cut -c1-150)"
    cp "$OUT/res/results.json" "$OUT/results_dev101_${b//:/_}_h200.json" 2>/dev/null; rm -rf "$OUT/res" "$OUT/results.log"
  done ;;
esac
