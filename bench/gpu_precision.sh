#!/usr/bin/env bash
# The cuda_graph backend's denoiser precision (fp32 / tf32 / bf16) on one lent H200, in one device
# call (~6 min; carry [".whl"]): the graph tests, a profile per precision (wall, GPU kernel time,
# palms against eager on the same seed), the latency of the deployed plan, and lift success on the
# fresh test set of unseen objects (seed 202, 32 views x 32 grasps) per precision and sampler.
#   bash bench/gpu_precision.sh      (MODEL, METHODS, PRECISIONS env overrides; writes into $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}
METHODS=${METHODS:-ddim:10,ddim:4}; PRECISIONS=${PRECISIONS:-fp32 tf32 bf16}; N=$(nproc --all)
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
python3 -m pytest -q -p no:cacheprovider test/test_infer_backends.py test/test_infer_postprocess.py -k "graph or chunk" 2>&1 | tail -n 2
T=/tmp/test202; [ -e $T/manifest.json ] || python3 -m sceneleap_core.cli scenes compose --library sceneleap_core/data/library_default \
  --split test --num-scenes 48 --views 2 --seed 202 --out $T > /tmp/compose.log 2>&1 || tail -n 5 /tmp/compose.log
B="eager"; for p in $PRECISIONS; do B="$B,cuda_graph:$p"; done
if [ "${PROFILE:-1}" = 1 ]; then
  python3 bench/profile_plan.py --model "$M" --device cuda --backends "$B" --repeats 10 > "$OUT/profile.txt" 2>&1
  grep -A 5 "^backend" "$OUT/profile.txt"
  python3 bench/latency.py --model "$M" --device cuda --backends "${B#eager,}" --samplers ddim:10,ddim:4 --grasps 32 \
    --points 20000 --oversample 2,8 --repeats 20 > "$OUT/latency.txt" 2>&1; grep -v "^wrote" "$OUT/latency.txt"
fi
# the collision filter's pair search on the GPU: one dense pass against the CPU's hand -> link -> box levels
for cull in ${CULLS:-levels dense levels dense}; do
  python3 bench/latency.py --model "$M" --device cuda --backends cuda_graph --samplers ddim:10 --grasps 32 --points 20000 \
    --oversample 2,8 --repeats 20 --post cull=$cull 2>&1 | tail -n 2
done
export PYTHONIOENCODING=utf-8 COLUMNS=160
for p in $PRECISIONS; do
  python3 bench/results.py $T --model "$M" --views 32 --grasps 32 --methods "$METHODS" --device cuda \
    --backend "cuda_graph:$p" --workers $((N - 1)) --out "$OUT/res_$p" > "$OUT/results_$p.log" 2>&1
  echo "== cuda_graph:$p"; tr '\r' '\n' < "$OUT/results_$p.log" | grep -v "views:" | tail -n 8 | cut -c1-150
  cp "$OUT/res_$p/results.json" "$OUT/results_$p.json" 2>/dev/null
done
rm -rf "$OUT"/res_* "$OUT"/results_*.log  # files back: at most 8
