#!/usr/bin/env bash
# Issues "the model must learn" + "data at scale", end to end on one GPU machine, phase by phase:
#   library  object grasp library (synthesis on the GPUs, lift + disturbance validation on the CPUs),
#            time-boxed: parts finished by the deadline are merged (LIB_SECONDS)
#   compose  composed scenes + depth views from the library: train (training objects), val (new
#            scenes of training objects) and test (scenes of UNSEEN test-split objects) shards
#   train    RUNS training runs side by side ("name:overrides" pairs, spread over the GPUs)
#   ladder   bench/learning.py on every run: lift success of sampled grasps (DDIM 10 and DDPM 100) on
#            training views, new scenes and unseen objects, chamfer, penetration, conditioning gap
#
#   W=/tmp/e2e bash bench/e2e_learning.sh library compose train ladder
#
# Every phase is resumable (library parts, scene shards, runs with a checkpoint are skipped).
#
# On the lent GPU machine (Python 3.12, torch/Lightning/h5py/scipy present) carry cp312 wheels of
# mujoco, mujoco-core, mujoco-studio, glfw, PyOpenGL, websockets, trimesh, rtree, omegaconf AND coacd
# (pins in requirements/lock.txt; without coacd non-convex objects fail to load in the simulator),
# install them with `pip install --no-index --no-deps --target /tmp/site .whl/*.whl`, and export
# PYTHONPATH=/tmp/site:$PWD. Start the script with setsid and poll: a call may run 10 minutes.
set -uo pipefail
W=${W:-/tmp/e2e}
PY=${PY:-python3}
SL="$PY -m sceneleap_core.cli"
NG=${NG:-$($PY -c "import torch; print(max(1, torch.cuda.device_count()))")}
DEV=${DEV:-$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
CPUS=$(nproc)
LIB_OBJECTS=${LIB_OBJECTS:-1000}
LIB_SECONDS=${LIB_SECONDS:-420}
LIB_ARGS=${LIB_ARGS:-}
LIB=${LIB:-$W/lib}  # the library the compose phase reads (e.g. the shipped sceneleap_core/data/library_default)
TRAIN_SCENES=${TRAIN_SCENES:-2000}
EVAL_SCENES=${EVAL_SCENES:-48}
VIEWS=${VIEWS:-4}
COMPOSE_SECONDS=${COMPOSE_SECONDS:-180}
COMPOSE_PROCS=${COMPOSE_PROCS:-$((CPUS - 2))}
STEPS=${STEPS:-6000}
TRAIN_MINUTES=${TRAIN_MINUTES:-0}
CONFIG=${CONFIG:-config/train/default.yaml}
TRAIN_ARGS=${TRAIN_ARGS:-}
RUNS=${RUNS:-"default:"}
LADDER_VIEWS=${LADDER_VIEWS:-32}
LADDER_GRASPS=${LADDER_GRASPS:-16}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$W"
# Run from a private copy of the code: the device tool lays a fresh copy of the repository on each
# call, and background phases (pool workers started later by forkserver) must never import from a
# tree that was replaced under them (the 2026-11-30 run lost its ladder to exactly that).
if [ -z "${E2E_SRC:-}" ]; then
  rm -rf "$W/src" && mkdir -p "$W/src" && cp -r sceneleap_core bench config "$W/src/"
  export E2E_SRC="$W/src" PYTHONPATH="$W/src${PYTHONPATH:+:$PYTHONPATH}"
  cd "$W/src" && exec bash bench/e2e_learning.sh "$@"
fi
stamp() { echo "[$(date +%T)] $*" | tee -a "$W/e2e.log"; }

# GNU timeout signals the command's whole process group (pool workers included) at the deadline
deadline() { local secs=$1; shift; timeout -k 10 "$secs" "$@"; }

phase_library() {
  local t0=$(date +%s)
  stamp "library: $LIB_OBJECTS objects max, $LIB_SECONDS s, $NG GPUs, $CPUS CPUs"
  per=$(( (CPUS - NG) / NG ))
  for i in $(seq 0 $((NG - 1))); do
    deadline "$LIB_SECONDS" $PY bench/library.py --out "$W/lib" --num-objects "$LIB_OBJECTS" --device "$DEV" \
      --workers "$per" --shard "$i/$NG" $LIB_ARGS > "$W/lib.shard$i.log" 2>&1 &
  done
  wait
  $PY bench/library.py --out "$W/lib" --merge-only 2>&1 | tail -30 | tee -a "$W/e2e.log"
  $SL library stats "$W/lib" --png "$W/lib_stats.png" 2>&1 | tail -30 | tee -a "$W/e2e.log"
  stamp "library: $(( $(date +%s) - t0 )) s"
}

compose_set() {  # name split scenes seed seconds
  local name=$1 split=$2 n=$3 seed=$4 secs=$5 procs=$6 t0=$(date +%s)
  for i in $(seq 0 $((procs - 1))); do
    CUDA_VISIBLE_DEVICES=$((i % NG)) deadline "$secs" $SL scenes compose --library "$LIB" --split "$split" \
      --num-scenes "$n" --views "$VIEWS" --scenes-per-shard 8 --seed "$seed" --device cpu --out "$W/$name" \
      --shard "$i/$procs" > "$W/compose_$name.$i.log" 2>&1 &
  done
  wait
  $PY - "$W/$name" <<'PYEOF'
import sys
from sceneleap_core.data.shards import write_manifest
write_manifest(sys.argv[1], pattern="shard_*.h5")
PYEOF
  $SL data stats "$W/$name" 2>&1 | tail -8 | tee -a "$W/e2e.log"
  stamp "compose $name ($split): $(( $(date +%s) - t0 )) s"
}

phase_compose() {
  compose_set test test "$EVAL_SCENES" 101 120 8 &
  compose_set val train "$EVAL_SCENES" 202 120 4 &
  compose_set train train "$TRAIN_SCENES" 0 "$COMPOSE_SECONDS" $((COMPOSE_PROCS - 12))
  wait
}

phase_train() {
  local k=0
  for spec in $RUNS; do
    name=${spec%%:*}; extra=${spec#*:}; extra=${extra//,/ }
    gpu=$((k % NG)); k=$((k + 1))
    if [ -f "$W/run_$name/model/model.safetensors" ]; then stamp "train $name: done already"; continue; fi
    stamp "train $name on GPU $gpu: $STEPS steps, $extra"
    CUDA_VISIBLE_DEVICES=$gpu setsid $SL train --config "$CONFIG" data.root="$W/train" data.val_root="${VAL_ROOT:-$W/test}" \
      run_dir="$W/run_$name" trainer.max_steps="$STEPS" trainer.max_minutes="$TRAIN_MINUTES" trainer.progress_bar=false trainer.devices=1 \
      data.num_workers=$(( CPUS > 2 ? (CPUS - 2) / $(echo $RUNS | wc -w) : 0 )) val.every=$((STEPS / 4)) \
      trainer.checkpoint_every=$((STEPS / 4)) $TRAIN_ARGS $extra > "$W/train_$name.log" 2>&1 &
  done
  wait
  stamp "train: all runs finished"
}

phase_ladder() {
  local k=0 n=$(echo $RUNS | wc -w)
  for spec in $RUNS; do
    name=${spec%%:*}; gpu=$((k % NG)); k=$((k + 1))
    held=""
    [ -f "$W/val/manifest.json" ] && held="$held --held-out new_scenes=$W/val"
    [ -f "$W/test/manifest.json" ] && held="$held --held-out unseen_objects=$W/test"
    CUDA_VISIBLE_DEVICES=$gpu $PY bench/learning.py --run "$W/run_$name" $held --views "$LADDER_VIEWS" --grasps "$LADDER_GRASPS" \
      --workers $(( (CPUS - 2) / n > 0 ? (CPUS - 2) / n : 1 )) > "$W/ladder_$name.log" 2>&1 &
  done
  wait
  for spec in $RUNS; do name=${spec%%:*}; stamp "ladder $name"; grep -A 30 "^ladder of" "$W/ladder_$name.log" | tee -a "$W/e2e.log"; done
}

for phase in "$@"; do "phase_$phase"; done
