# Shared by the GPU scripts (source it; it needs SL, PY and LIB): compose the training scenes of the
# bundled model's recipe (split train, seed 0, 4 views) and the development set of unseen objects
# (split test, 48 scenes, 4 views, seed 101) in parallel processes, then write both manifests and
# print their first stats lines.
#   compose_train_and_dev W SCENES NTRAIN NTEST   # -> W/train, W/test (logs W/ctrain.i.log, W/ctest.i.log)
compose_train_and_dev() {
  local w=$1 scenes=$2 ntrain=$3 ntest=$4 i
  for i in $(seq 0 $((ntrain - 1))); do
    timeout -k 5 300 $SL scenes compose --library $LIB --split train --num-scenes "$scenes" --views 4 \
      --scenes-per-shard 8 --seed 0 --device cpu --out "$w/train" --shard "$i/$ntrain" > "$w/ctrain.$i.log" 2>&1 &
  done
  compose_dev_shards "$w" "$ntest"
  wait
  $PY -c "
from sceneleap_core.data.shards import write_manifest
for d in ('train', 'test'): write_manifest('$w/' + d, pattern='shard_*.h5')"
  $SL data stats "$w/train" | head -3; $SL data stats "$w/test" | head -3
}

# The development set alone: its NTEST shard processes started in the background (the caller waits,
# then writes W/test's manifest).
#   compose_dev_shards W NTEST   # -> W/test (logs W/ctest.i.log)
compose_dev_shards() {
  local w=$1 ntest=$2 i
  for i in $(seq 0 $((ntest - 1))); do
    timeout -k 5 300 $SL scenes compose --library $LIB --split test --num-scenes 48 --views 4 \
      --scenes-per-shard 8 --seed 101 --device cpu --out "$w/test" --shard "$i/$ntest" > "$w/ctest.$i.log" 2>&1 &
  done
}
