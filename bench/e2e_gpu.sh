#!/usr/bin/env bash
# End to end on a GPU machine, in one command: generate a dataset (grasp synthesis on each GPU,
# MuJoCo validation on the CPUs, one generator process per GPU filling one dataset with --shard),
# then train the default model with Lightning DDP on all GPUs (bf16-mixed) with periodic
# validation including the simulated lift success, and export the EMA model.
#
#   NG=2 SCENES=32 STEPS=600 OUT=/tmp/e2e bash bench/e2e_gpu.sh
#
# Writes gen_<i>.json (generator reports), stats.txt, metrics.csv and the run directory under $OUT.
set -euo pipefail
NG=${NG:-$(python3 -c "import torch; print(torch.cuda.device_count())")}
SCENES=${SCENES:-32}
STEPS=${STEPS:-600}
OUT=${OUT:-/tmp/e2e}
DATA=${DATA:-/tmp/e2e_data}
RUN=${RUN:-/tmp/e2e_run}
CPUS=$(nproc)
SL="python3 -m sceneleap_core.cli"
mkdir -p "$OUT"
t0=$(date +%s)
for i in $(seq 0 $((NG - 1))); do
  CUDA_VISIBLE_DEVICES=$i OMP_NUM_THREADS=1 $SL data generate --out "$DATA" --num-scenes "$SCENES" \
    --scenes-per-shard 2 --num-objects 64 --objects-per-scene 1 4 --views 4 --device cuda \
    --synth-batch 256 --workers $((CPUS / NG - 1)) --shard "$i/$NG" --quiet > "$OUT/gen_$i.json" &
done
wait
t1=$(date +%s)
$SL data stats "$DATA" --verify | tee "$OUT/stats.txt"
echo "generation: $((t1 - t0)) s on $NG GPUs + $CPUS CPUs" | tee -a "$OUT/stats.txt"
$SL train --config config/train/default.yaml data.root="$DATA" data.val_root=null data.val_fraction=0.2 \
  data.num_workers=4 data.batch_size=32 trainer.devices="$NG" trainer.max_steps="$STEPS" \
  trainer.checkpoint_every=$((STEPS / 2)) trainer.progress_bar=false optim.warmup_steps=50 \
  val.every=$((STEPS / 3)) val.evaluator=sceneleap_core.train.sim_validation:lift_evaluator \
  val.evaluator_every=1 run_dir="$RUN" 2>&1 | grep -v "^INFO lightning" | tail -20
t2=$(date +%s)
echo "training: $((t2 - t1)) s" | tee -a "$OUT/stats.txt"
cp "$RUN"/csv/version_0/metrics.csv "$OUT/metrics.csv"
python3 - "$OUT/metrics.csv" <<'PY'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    vals = {k: v for k, v in row.items() if v and k.startswith("val/")}
    if vals:
        print("step", row["step"], " ".join(f"{k[4:]}={float(v):.3f}" for k, v in sorted(vals.items())))
PY
