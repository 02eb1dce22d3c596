#!/usr/bin/env bash
# One-call A/B of the anchored representation on a lent 2xH200: compose train + unseen-object test
# scenes from the shipped library, train `anchor` (model.anchor=seed) and `base` side by side, ladder.
#   bash bench/gpu_anchor_ab.sh  (W, SCENES, STEPS, MINUTES, VIEWS env overrides)
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
W=${W:-/tmp/ab}; SCENES=${SCENES:-1200}; STEPS=${STEPS:-8000}; MINUTES=${MINUTES:-6.5}; VIEWS=${VIEWS:-16}
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default
mkdir -p "$W"; rm -rf "$W/src"; mkdir -p "$W/src"; cp -r sceneleap_core bench config "$W/src/"; cd "$W/src"
export PYTHONPATH="$W/src${PYTHONPATH:+:$PYTHONPATH}"
t0=$(date +%s)
for i in $(seq 0 23); do
  timeout -k 5 100 $SL scenes compose --library $LIB --split train --num-scenes "$SCENES" --views 4 --scenes-per-shard 8 \
    --seed 0 --device cpu --out "$W/train" --shard "$i/24" > "$W/ctrain.$i.log" 2>&1 &
done
for i in $(seq 0 5); do
  timeout -k 5 100 $SL scenes compose --library $LIB --split test --num-scenes 48 --views 4 --scenes-per-shard 8 \
    --seed 101 --device cpu --out "$W/test" --shard "$i/6" > "$W/ctest.$i.log" 2>&1 &
done
wait
$PY -c "
from sceneleap_core.data.shards import write_manifest
for d in ('train', 'test'): write_manifest('$W/' + d, pattern='shard_*.h5')"
$SL data stats "$W/train" | head -3; $SL data stats "$W/test" | head -3
echo "compose: $(( $(date +%s) - t0 )) s"
g=0
for spec in "anchor:model.anchor=seed" "base:"; do
  name=${spec%%:*}; extra=${spec#*:}
  CUDA_VISIBLE_DEVICES=$g $SL train --config config/train/default.yaml data.root="$W/train" data.val_root="$W/test" \
    run_dir="$W/run_$name" trainer.max_steps=$STEPS trainer.max_minutes=$MINUTES trainer.progress_bar=false \
    trainer.devices=1 data.num_workers=14 val.every=$STEPS trainer.checkpoint_every=$STEPS $extra > "$W/train_$name.log" 2>&1 &
  g=$((g + 1))
done
wait
echo "train: $(( $(date +%s) - t0 )) s"
g=0
for name in anchor base; do
  CUDA_VISIBLE_DEVICES=$g $PY bench/learning.py --run "$W/run_$name" --held-out unseen_objects="$W/test" --views "$VIEWS" \
    --grasps 16 --workers 14 > "$W/ladder_$name.log" 2>&1 &
  g=$((g + 1))
done
wait
for name in anchor base; do grep -A 30 "^ladder of" "$W/ladder_$name.log" || tail -n 20 "$W/ladder_$name.log"; done
echo "total: $(( $(date +%s) - t0 )) s"
