#!/usr/bin/env bash
# Library build on 2 GPUs + 32 CPUs: bench/library_2gpu.sh OUT N_OBJECTS [extra build args...]
# Two shard processes (one GPU each, 15 validation workers each), then merge and stats.
set -euo pipefail
OUT=${1:?usage: bench/library_2gpu.sh OUT N_OBJECTS}
N=${2:?usage: bench/library_2gpu.sh OUT N_OBJECTS}
shift 2
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
start=$(date +%s)
for i in 0 1; do
  $PY bench/library.py --out "$OUT" --num-objects "$N" --device cuda --workers 15 --shard "$i/2" "$@" \
    > "$OUT.shard$i.log" 2>&1 &
done
wait
echo "both shards done in $(( $(date +%s) - start )) s (logs: $OUT.shard*.log)"
$PY bench/library.py --out "$OUT" --merge-only
$PY -m sceneleap_core.cli library stats "$OUT" --png "$OUT/stats.png"
