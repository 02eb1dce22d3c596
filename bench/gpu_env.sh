# Sourced by the bench/gpu_*.sh scripts on a lent GPU machine, in the repository root: one thread
# per process, unbuffered output, the cp312 wheels carried in .whl (MuJoCo, trimesh, ...; carry
# [".whl"]) installed into /tmp/site, they and the checkout on PYTHONPATH, and the GPU named.
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
[ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
