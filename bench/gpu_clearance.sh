#!/usr/bin/env bash
# Finger clearance (PostConfig.clearance) on one lent H200, in one device call (~6 min; carry
# [".whl"]): the post-processing tests, the deployed plan's latency per clearance stage (alternating
# runs), and lift success on the fresh test set of unseen objects (seed 202, 32 views x 32 grasps)
# per stage through the H200 planner (tf32 CUDA graphs, critic, 8x).
#   bash bench/gpu_clearance.sh      (MODEL, STAGES, LIFT_STAGES (default STAGES), REPEATS (latency runs per
#                                    stage, alternating; default 2), POST env overrides; writes into $OUT)
set -uo pipefail
export PYTHONIOENCODING=utf-8 COLUMNS=160
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}
STAGES=${STAGES:-off returned candidates}; LIFT_STAGES=${LIFT_STAGES:-$STAGES}; POST=${POST:-}; N=$(nproc --all)
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
python3 -m pytest -q -p no:cacheprovider test/test_infer_postprocess.py 2>&1 | tail -n 2  # on the GPU too
T=/tmp/test202; [ -e $T/manifest.json ] || python3 -m sceneleap_core.cli scenes compose --library sceneleap_core/data/library_default \
  --split test --num-scenes 48 --views 2 --seed 202 --out $T > /tmp/compose.log 2>&1 || tail -n 5 /tmp/compose.log
extra=(); for kv in $POST; do extra+=(--post "$kv"); done
for rep in $(seq 1 "${REPEATS:-2}"); do
  for s in $STAGES; do
    echo "== latency, clearance=$s (run $rep)"
    python3 bench/latency.py --model "$M" --device cuda --backends cuda_graph --samplers ddim:10 --grasps 32 --points 20000 \
      --oversample 8 --repeats 20 --post clearance=$s "${extra[@]}" 2>&1 | grep -A 3 "^backend" | cut -c1-200
  done
done
for s in $LIFT_STAGES; do
  python3 bench/results.py $T --model "$M" --views 32 --grasps 32 --methods ddim:10 --device cuda --backend cuda_graph \
    --workers $((N - 1)) --post clearance=$s "${extra[@]}" --out "$OUT/res_$s" > "$OUT/results_$s.log" 2>&1
  echo "== lift, clearance=$s"; tr '\r' '\n' < "$OUT/results_$s.log" | grep -v "views:" | tail -n 6 | cut -c1-150
  cp "$OUT/res_$s/results.json" "$OUT/results_clearance_$s.json" 2>/dev/null
done
rm -rf "$OUT"/res_* "$OUT"/results_*.log  # files back: at most 8
