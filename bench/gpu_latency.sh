#!/usr/bin/env bash
# The planner's latency on one lent H200, in one device call (~6 min; carry [".whl"], the cp312
# wheels of bench/gpu_default_model.sh): the CUDA-graph tests, a profile of the bundled model's plan()
# per backend (wall against GPU kernel time, launches, parity with eager), the latency grid of the
# deployed backend over samplers x candidates per grasp, and the seed's baseline (DDPM 100, eager).
#   bash bench/gpu_latency.sh        (MODEL, REPEATS, OVERSAMPLE, SAMPLERS env overrides; writes into $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; M=${MODEL:-sceneleap_core/assets/default_model}; R=${REPEATS:-20}
OVERSAMPLE=${OVERSAMPLE:-2,4,8}; SAMPLERS=${SAMPLERS:-ddim:10,ddim:4,dpmpp:5}
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
python3 -m pytest -q -p no:cacheprovider test/test_infer_backends.py -k "graph" 2>&1 | tail -n 3
for x in ${OVERSAMPLE//,/ }; do
  python3 bench/profile_plan.py --model "$M" --device cuda --backends eager,cuda_graph --oversample "$x" --repeats 10 \
    > "$OUT/profile_x$x.txt" 2>&1; sed -n '1,4p' "$OUT/profile_x$x.txt"
done
python3 bench/latency.py --model "$M" --device cuda --backends cuda_graph --samplers "$SAMPLERS" --grasps 8,32,128 \
  --points 20000 --oversample "$OVERSAMPLE" --repeats "$R" --png "$OUT/latency_vs_g.png" > "$OUT/latency.txt" 2>&1
python3 bench/latency.py --model "$M" --device cuda --backends eager --samplers ddpm:100,ddim:10 --grasps 32 \
  --points 20000 --oversample 8 --repeats 5 > "$OUT/latency_ddpm.txt" 2>&1
cat "$OUT/latency.txt" "$OUT/latency_ddpm.txt" | grep -v "^wrote"
