#!/usr/bin/env bash
# One lent H200: classifier-free guidance sweep of the bundled model on unseen-object scenes (the
# ladder's held-out rung), then planner latency per backend (eager vs torch.compile).
#   bash bench/gpu_guidance.sh   (GUIDANCE, VIEWS, GRASPS env overrides; writes into $OUT)
set -uo pipefail
GUIDANCE=${GUIDANCE:-1 2 3}; VIEWS=${VIEWS:-48}; GRASPS=${GRASPS:-32}; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
. bench/gpu_env.sh  # threads, wheels, PYTHONPATH, the GPU
N=$(nproc --all); T=/tmp/gtest; rm -rf $T /tmp/grun; mkdir -p /tmp/grun
for i in $(seq 0 11); do
  python3 -m sceneleap_core.cli scenes compose --library sceneleap_core/data/library_default --split test --num-scenes 48 \
    --views 4 --scenes-per-shard 4 --seed 101 --device cpu --out $T --shard "$i/12" > /tmp/c.$i.log 2>&1 &
done; wait
python3 -c "from sceneleap_core.data.shards import write_manifest; write_manifest('$T', pattern='shard_*.h5')"
cp sceneleap_core/assets/default_model/training_config.yaml /tmp/grun/config.yaml; ln -s $PWD/sceneleap_core/assets/default_model /tmp/grun/model
for g in $GUIDANCE; do
  python3 bench/learning.py --run /tmp/grun --held-out unseen_objects=$T --no-train-views --views $VIEWS --grasps $GRASPS \
    --workers $((N - 1)) --samplers dpmpp:10 --anchor-rows "" --no-oracle --guidance $g data.root=$T data.val_root=$T \
    > "$OUT/guidance_$g.log" 2>&1
  grep -A 3 "^ladder of" "$OUT/guidance_$g.log" | cut -c1-110
done
timeout 150 python3 bench/latency.py --model sceneleap_core/assets/default_model --device cuda --backends eager,compile \
  --samplers dpmpp:10 --grasps 8,32,128 --points 20000 --repeats 10 > "$OUT/latency_compile.txt" 2>&1
cat "$OUT/latency_compile.txt" | tail -n 8
