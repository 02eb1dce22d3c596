#!/usr/bin/env bash
# The aoti backend on one lent H200 (carry [".whl"]): compile the bundled model's denoiser step with
# AOTInductor, probe-load it in a child process with and without a CUDA context first, and if it
# loads, time plan() with it beside eager and cuda_graph. ~5 min (the compile is most of it).
set -uo pipefail
M=${MODEL:-sceneleap_core/assets/default_model}; E=/tmp/engines
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
timeout 420 python3 - "$M" "$E/aoti" <<'PY'
import json, sys, time
import torch
from sceneleap_core.infer.aoti import export_aoti, probe_load
from sceneleap_core.models import GraspGenerator
model, _, _ = GraspGenerator.load_pretrained(sys.argv[1], device="cuda")
t = time.perf_counter()
pkg = export_aoti(model.eval(), sys.argv[2], device="cuda", num_points=4096)
print(f"compiled {pkg} in {time.perf_counter() - t:.0f} s")
print("probe without a CUDA context:", probe_load(pkg, device="cpu") or "loaded")
err = probe_load(pkg, device="cuda")
print("probe with a CUDA context:   ", err or "loaded")
if err is None:
    open("/tmp/aoti_ok", "w").close()
PY
[ -e /tmp/aoti_ok ] && timeout 150 python3 bench/latency.py --model "$M" --device cuda --backends aoti,cuda_graph:fp32 --samplers ddim:10 \
  --grasps 32 --points 20000 --oversample 8 --repeats 20 --engine-dir $E 2>&1 | grep -v "^wrote" | tail -n 12
