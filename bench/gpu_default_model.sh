#!/usr/bin/env bash
# The default model's GPU run on one lent H200, across chained device calls (each <= 10 minutes; a
# background job survives between calls only while the machine stays held):
# The cp312 wheels it installs live in .whl/ (git-ignored): pass carry [".whl"] to the device call.
#   bash bench/gpu_default_model.sh start    # install, compose train + unseen-object scenes, start the
#                                            # background pipeline (train -> ladder -> pack), poll
#   bash bench/gpu_default_model.sh poll     # wait (up to ~9.5 min) and show progress
#   bash bench/gpu_default_model.sh collect  # wait for the pipeline, copy the packed model, logs and
#                                            # ladder into $OUT
#   bash bench/gpu_default_model.sh speed    # (before start) the default model's training step on
#                                            # synthetic data: fp32 / bf16 / + torch.compile (~3 min)
#   bash bench/gpu_default_model.sh e2espeed # (before start) real training runs on composed scenes, one
#                                            # per SPEED_RUNS spec, SPEED_STEPS steps each: steps/s,
#                                            # samples/s, share of time waiting for data, GPU busy (~8 min)
# Env: W (work dir), SCENES, STEPS, MINUTES, VIEWS, GRASPS, LADDER (the ladder's samplers; the first also
# with the planner's finger clearance at CLEARANCE m, default 0.001, and at each initial-noise scale of
# TEMPS, e.g. "0.5"; ANCHOR_ROWS: the ladder's
# --anchor-rows, default true, empty = none), WORKERS, BUDGET (seconds one call may wait),
# CONFIG (the training config, default config/train/default.yaml; config/train/finetune.yaml for
# stage 2), MODEL / EXTRA (training config overrides of every run), RUNS (runs trained side by side on the same
# composed data, sharing the GPU: "name:override override|name2:..."; default one run "default:").
# Each run gets $W/<name>/{run,packed,train.log,ladder.log}; collect returns every packed model, or
# only those named in KEEP (space-separated run names: the device returns at most 8 files).
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1  # (GNU nproc honours OMP_NUM_THREADS: NPROC uses --all)
W=${W:-/tmp/dm}; SCENES=${SCENES:-2000}; STEPS=${STEPS:-14000}; MINUTES=${MINUTES:-15}; VIEWS=${VIEWS:-12}
GRASPS=${GRASPS:-16}; LADDER=${LADDER:-dpmpp:10,ddpm:100,ddim:10}; WORKERS=${WORKERS:-15}; BUDGET=${BUDGET:-570}; NPROC=${NPROC:-$(nproc --all)}
# the shipped size: dit_s at d_model 288 (13.8 M parameters, 28 MB as float16; d384 is 24 M / 46 MB)
MODEL=${MODEL:-model.d_model=288 model.heads=6}; EXTRA=${EXTRA:-}; RUNS=${RUNS:-default:}
IFS='|' read -r -a RUN_SPECS <<< "$RUNS"; NRUNS=${#RUN_SPECS[@]}
PY=python3; SL="$PY -m sceneleap_core.cli"; LIB=sceneleap_core/data/library_default
T0=$(date +%s)
phase=${1:?start | poll | collect | speed | e2espeed}

wait_for() {  # wait until every run's done file exists or BUDGET seconds of this call have passed
  local spec name missing
  if [ ! -e "$W/env.sh" ]; then  # a poll/collect that lands on a fresh machine must not wait out its budget
    echo "no pipeline under $W on this machine: it is a fresh one (the last was given back after its idle" \
      "time), so the background run is lost; run 'start' again" >&2
    exit 3
  fi
  while [ $(( $(date +%s) - T0 )) -lt "$BUDGET" ]; do
    missing=0
    for spec in "${RUN_SPECS[@]}"; do [ -e "$W/${spec%%:*}/done" ] || missing=1; done
    [ "$missing" = 0 ] && break; sleep 10
  done
  echo "--- $(( $(date +%s) - T0 )) s into this call"
  for spec in "${RUN_SPECS[@]}"; do
    name=${spec%%:*}; echo "[$name] stage: $(cat "$W/$name/stage" 2>/dev/null)"
    grep -h "Error\|error" "$W/$name/train.log" 2>/dev/null | tail -n 3
    (head -n 1 "$W/$name"/run/csv/version_0/metrics.csv; tail -n 2 "$W/$name"/run/csv/version_0/metrics.csv) 2>/dev/null | cut -c1-400
    tail -n 4 "$W/$name/ladder.log" 2>/dev/null
  done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
}

if [ "$phase" = speed ]; then  # is the step or the loader the limit, and which precision is fastest?
  PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} $PY bench/train.py --points 8192 --grasps 64 --batch 32 --ckpt off --steps 20 \
    --modes fp32,bf16,fp32+compile,bf16+compile \
    --model-args anchor=seed anchor_region_knn=128 anchor_scene=true d_model=288 heads=6
  exit $?
fi
if [ "$phase" = e2espeed ]; then  # the whole training loop (loader included) per config, side by side
  SPEED_RUNS=${SPEED_RUNS:-b32:|b64:data.batch_size=64|b64c:data.batch_size=64 trainer.compile=true|b32f:trainer.precision=32-true}
  SPEED_STEPS=${SPEED_STEPS:-400}; SPEED_SCENES=${SPEED_SCENES:-256}
  [ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD; S=$W/speed; rm -rf "$S"; mkdir -p "$S"
  nc=$(( NPROC > 3 ? NPROC - 2 : 1 ))
  for i in $(seq 0 $((nc - 1))); do
    $SL scenes compose --library $LIB --split train --num-scenes "$SPEED_SCENES" --views 4 --scenes-per-shard 4 \
      --seed 0 --device cpu --out "$S/data" --shard "$i/$nc" > /dev/null 2>&1 &
  done
  wait
  $PY -c "from sceneleap_core.data.shards import write_manifest; write_manifest('$S/data', pattern='shard_*.h5')"
  echo "composed $SPEED_SCENES scenes: $(( $(date +%s) - T0 )) s"
  IFS='|' read -r -a SPECS <<< "$SPEED_RUNS"; rows=()
  for spec in "${SPECS[@]}"; do
    name=${spec%%:*}; over=${spec#*:}; t1=$(date +%s)
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 500 > "$S/$name.gpu" 2>/dev/null &
    smi=$!
    timeout -k 5 240 $SL train --config config/train/default.yaml data.root="$S/data" data.val_root="$S/data" \
      run_dir="$S/$name" trainer.max_steps=$SPEED_STEPS val.every=0 trainer.progress_bar=false trainer.devices=1 \
      trainer.log_every=50 trainer.checkpoint_every=100000 data.num_workers=$nc logger=csv $MODEL $over \
      > "$S/$name.log" 2>&1
    kill $smi 2>/dev/null
    busy=$(awk 'NR > 20 { s += $1; n++ } END { printf "%.0f", n ? s / n : -1 }' "$S/$name.gpu")
    perf=$($PY -c "
import csv, sys
rows = [r for r in csv.DictReader(open('$S/$name/csv/version_0/metrics.csv')) if r.get('perf/steps_per_s')]
r = rows[-1] if rows else {}
print('%s %s %s' % tuple('%.3g' % float(r[k]) if k in r else '-' for k in ('perf/steps_per_s', 'perf/samples_per_s', 'perf/data_wait_frac')))
" 2>/dev/null || echo "- - -")
    grep -h "Error" "$S/$name.log" | tail -n 2
    rows+=("$name $perf $busy $(( $(date +%s) - t1 ))")
  done
  printf '%-6s %10s %12s %10s %9s %7s\n' run steps/s samples/s data_wait gpu_busy wall_s
  for r in "${rows[@]}"; do printf '%-6s %10s %12s %10s %9s %7s\n' $r; done
  exit 0
fi
if [ "$phase" = start ]; then
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  fi
  mkdir -p "$W"; rm -rf "$W/src" "$W/done" "$W/stage" "$W/ladder.log"; mkdir -p "$W/src"; cp -r sceneleap_core bench config "$W/src/"
  cat > "$W/env.sh" <<EOF
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$W/src
EOF
  . "$W/env.sh"; cd "$W/src"
  ntest=$(( NPROC / 8 > 0 ? NPROC / 8 : 1 )); ntrain=$(( NPROC - ntest ))
  echo compose > "$W/stage"
  . bench/compose_sets.sh; compose_train_and_dev "$W" "$SCENES" "$ntrain" "$ntest"
  echo "compose: $(( $(date +%s) - T0 )) s"
  nload=$(( (NPROC - 2) / NRUNS > 1 ? (NPROC - 2) / NRUNS : 1 ))  # data workers per run
  for spec in "${RUN_SPECS[@]}"; do
    name=${spec%%:*}; over=${spec#*:}; R="$W/$name"; rm -rf "$R"; mkdir -p "$R"
    cat > "$R/pipeline.sh" <<EOF
. "$W/env.sh"; cd "$W/src"
echo train > "$R/stage"
$SL train --config ${CONFIG:-config/train/default.yaml} data.root="$W/train" data.val_root="$W/test" run_dir="$R/run" \\
  trainer.max_steps=$STEPS trainer.max_minutes=$MINUTES trainer.progress_bar=false trainer.devices=1 \\
  data.num_workers=$nload val.every=$((STEPS / 4)) trainer.checkpoint_every=2000 $MODEL $EXTRA $over > "$R/train.log" 2>&1
echo ladder > "$R/stage"
$PY bench/learning.py --run "$R/run" --held-out unseen_objects="$W/test" --views $VIEWS --grasps $GRASPS \\
  --workers $(( WORKERS / NRUNS > 0 ? WORKERS / NRUNS : 1 )) --samplers $LADDER --anchor-rows "${ANCHOR_ROWS-true}" \\
  --clearance ${CLEARANCE:-0.001} --temperatures "${TEMPS:-}" --no-oracle > "$R/ladder.log" 2>&1
echo pack > "$R/stage"
$SL model pack "$R/run/model" --out "$R/packed" --dtype float16 --max-shard-mb 15 > "$R/pack.log" 2>&1
echo done > "$R/stage"; touch "$R/done"
EOF
    setsid nohup bash "$R/pipeline.sh" > "$R/pipeline.log" 2>&1 < /dev/null &
  done
  wait_for
elif [ "$phase" = poll ]; then
  wait_for
elif [ "$phase" = collect ]; then
  wait_for
  OUT=${OUT:-$W/out}; first=""; logs=()  # (the device returns at most 8 files: models + logs.tgz + latency.txt)
  for spec in "${RUN_SPECS[@]}"; do
    name=${spec%%:*}; R="$W/$name"; [ -n "$first" ] || first=$name
    case " ${KEEP:-$name} " in *" $name "*) mkdir -p "$OUT/$name"; cp "$R"/packed/* "$OUT/$name/" 2>/dev/null;; esac
    for f in train.log ladder.log pack.log pipeline.log run/config.yaml run/ladder.json run/ladder.png \
      run/csv/version_0/metrics.csv; do [ -e "$R/$f" ] && logs+=("$name/$f"); done
    echo "=== $name"; grep -A 30 "^ladder of" "$R/ladder.log" || tail -n 30 "$R/ladder.log"
  done
  tar czf "$OUT/logs.tgz" -C "$W" "${logs[@]}"
  LAT=${LATENCY_RUN:-$first}  # planner latency of one packed model
  if [ -e "$W/$LAT/packed/config.json" ] && [ "${LATENCY:-1}" = 1 ]; then
    . "$W/env.sh"; PYTHONPATH=/tmp/site:$PWD timeout 240 $PY bench/latency.py --model "$W/$LAT/packed" --device cuda \
      > "$OUT/latency.txt" 2>&1; cat "$OUT/latency.txt"
  fi
  ls -laR "$OUT"
fi
