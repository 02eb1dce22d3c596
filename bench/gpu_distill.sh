#!/usr/bin/env bash
# Verified self-distillation of the bundled model on one lent H200, across chained device calls
# (each <= 10 minutes; the background job lives while the machine stays held). Pass carry [".whl"].
#   bash bench/gpu_distill.sh start    # install, compose training scenes (the bundled model's: split
#                                      # train, seed 0, 4 views) and unseen-object scenes (seed 101),
#                                      # start the background pipeline, wait up to BUDGET s:
#                                      #   distill (PARTS processes, the planner's grasps lift-tested,
#                                      #   the lifted kept) -> fine-tune (CONFIG, init_from bundled) on
#                                      #   them -> ladder of the fine-tune; the bundled model's ladder on
#                                      #   the same views runs beside the fine-tune -> pack
#   bash bench/gpu_distill.sh poll     # wait (up to BUDGET s) and show progress
#   bash bench/gpu_distill.sh collect  # the packed model, both ladders, logs into $OUT
# Env: W (work dir), SCENES (training scenes composed; the first SCENES of the bundled model's 2000),
# DVIEWS (views distilled), DGRASPS (grasps planned per view), PARTS (distill processes), SIMW (their
# simulation workers each), KEEP_GT (1 = keep each view's own grasps too), CONFIG, MINUTES, STEPS,
# EXTRA (training overrides), VIEWS / GRASPS / LADDER / TEMP (the ladders), BUDGET.
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
W=${W:-/tmp/distill}; SCENES=${SCENES:-600}; DVIEWS=${DVIEWS:-2000}; DGRASPS=${DGRASPS:-16}; PARTS=${PARTS:-3}
SIMW=${SIMW:-4}; KEEP_GT=${KEEP_GT:-0}; CONFIG=${CONFIG:-config/train/finetune.yaml}; MINUTES=${MINUTES:-7}
STEPS=${STEPS:-4000}; EXTRA=${EXTRA:-}; VIEWS=${VIEWS:-16}; GRASPS=${GRASPS:-16}; LADDER=${LADDER:-ddim:10,ddpm:100}
TEMP=${TEMP:-0.5}; BUDGET=${BUDGET:-570}; NPROC=${NPROC:-$(nproc --all)}
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default; BUNDLED=sceneleap_core/assets/default_model
T0=$(date +%s)
phase=${1:?start | poll | collect}

show() {
  echo "--- $(( $(date +%s) - T0 )) s into this call; stage: $(cat "$W/stage" 2>/dev/null)"
  for f in "$W"/distill.*.log; do [ -e "$f" ] && echo "$(basename "$f"): $(tr '\r' '\n' < "$f" | grep -v '^\s*$' | tail -n 1 | cut -c1-160)"; done
  grep -h "Error\|error" "$W"/train.log "$W"/distill.*.log 2>/dev/null | tail -n 3
  (head -n 1 "$W"/run/csv/version_0/metrics.csv; tail -n 1 "$W"/run/csv/version_0/metrics.csv) 2>/dev/null | cut -c1-300
  tail -n 3 "$W"/base_ladder.log "$W"/ladder.log 2>/dev/null
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
}
wait_done() {
  if [ ! -e "$W/env.sh" ]; then
    echo "no pipeline under $W on this machine: it is a fresh one (the last was given back), run 'start' again" >&2
    exit 3
  fi
  while [ ! -e "$W/done" ] && [ $(( $(date +%s) - T0 )) -lt "$BUDGET" ]; do sleep 10; done
  show
}

if [ "$phase" = start ]; then
  [ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  rm -rf "$W"; mkdir -p "$W/src"; cp -r sceneleap_core bench config "$W/src/"
  echo "export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$W/src" > "$W/env.sh"
  . "$W/env.sh"; cd "$W/src"
  echo compose > "$W/stage"
  ntest=2; ntrain=$(( NPROC - ntest > 1 ? NPROC - ntest : 1 ))
  . bench/compose_sets.sh; compose_train_and_dev "$W" "$SCENES" "$ntrain" "$ntest"
  echo "compose: $(( $(date +%s) - T0 )) s"
  keep=""; [ "$KEEP_GT" = 1 ] && keep="--keep-ground-truth"
  cat > "$W/pipeline.sh" <<EOF
. "$W/env.sh"; cd "$W/src"
echo distill > "$W/stage"; t=\$(date +%s)
for i in \$(seq 0 $((PARTS - 1))); do
  $SL data distill "$W/train" --model $BUNDLED --out "$W/distilled" --views $DVIEWS --grasps $DGRASPS \\
    --views-per-shard 32 --workers $SIMW --device cuda --shard \$i/$PARTS $keep > "$W/distill.\$i.log" 2>&1 &
done
wait
$SL data stats "$W/distilled" > "$W/distilled_stats.txt" 2>&1; echo "distill: \$(( \$(date +%s) - t )) s" >> "$W/times.txt"
echo train > "$W/stage"; t=\$(date +%s)
$SL train --config $CONFIG data.root="$W/distilled" data.val_root="$W/test" run_dir="$W/run" \\
  trainer.max_steps=$STEPS trainer.max_minutes=$MINUTES trainer.progress_bar=false trainer.devices=1 \\
  data.num_workers=6 val.every=$((STEPS / 4)) trainer.checkpoint_every=2000 $EXTRA > "$W/train.log" 2>&1 &
train=\$!
while [ ! -e "$W/run/config.yaml" ] && kill -0 \$train 2>/dev/null; do sleep 5; done
mkdir -p "$W/base"; cp "$W/run/config.yaml" "$W/base/config.yaml"; ln -s "\$PWD/$BUNDLED" "$W/base/model"
$PY bench/learning.py --run "$W/base" --held-out train_scenes="$W/train" --held-out unseen_objects="$W/test" \\
  --views $VIEWS --grasps $GRASPS --workers 6 --samplers $LADDER --anchor-rows "" --temperature $TEMP --no-oracle \\
  > "$W/base_ladder.log" 2>&1
wait \$train; echo "train: \$(( \$(date +%s) - t )) s" >> "$W/times.txt"
echo ladder > "$W/stage"
$PY bench/learning.py --run "$W/run" --held-out train_scenes="$W/train" --held-out unseen_objects="$W/test" \\
  --views $VIEWS --grasps $GRASPS --workers 14 --samplers $LADDER --anchor-rows "" --temperature $TEMP --no-oracle \\
  > "$W/ladder.log" 2>&1
echo pack > "$W/stage"
$SL model pack "$W/run/model" --out "$W/packed" --dtype float16 --max-shard-mb 15 --temperature $TEMP \\
  --oversample 8 --post clearance=returned --post clearance_tolerance=0.001 > "$W/pack.log" 2>&1
cp $BUNDLED/critic.json $BUNDLED/critic.safetensors $BUNDLED/ranker.json "$W/packed/"  # the bundled ranking
echo done > "$W/stage"; touch "$W/done"
EOF
  setsid nohup bash "$W/pipeline.sh" > "$W/pipeline.log" 2>&1 < /dev/null &
  wait_done
elif [ "$phase" = poll ]; then
  wait_done
elif [ "$phase" = collect ]; then
  wait_done
  OUT=${OUT:-$W/out}; mkdir -p "$OUT/model"; cp "$W"/packed/* "$OUT/model/" 2>/dev/null
  for f in ladder.log base_ladder.log; do echo "=== $f"; grep -A 30 "^ladder of" "$W/$f" || tail -n 30 "$W/$f"; done
  cat "$W/times.txt" "$W/distilled_stats.txt" 2>/dev/null
  logs=(); for f in train.log ladder.log base_ladder.log pipeline.log times.txt distilled_stats.txt distill.0.log \
    run/config.yaml run/ladder.json base/ladder.json run/ladder.png base/ladder.png run/csv/version_0/metrics.csv; do
    [ -e "$W/$f" ] && logs+=("$f"); done
  tar czf "$OUT/logs.tgz" -C "$W" "${logs[@]}"
  ls -laR "$OUT"
fi
