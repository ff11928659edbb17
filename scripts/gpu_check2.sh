#!/usr/bin/env bash
# Second GPU pass: the GPU tests, per-step times of engine settings, and the two recipes end to end.
# Run: bash scripts/gpu_check2.sh  (expects MNIST gzipped in .gpu/raw; writes to $OUT)
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" /tmp/mnist/MNIST/raw
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MNISTCNN_DATA_DIR=/tmp/mnist
for f in .gpu/raw/*.gz; do gunzip -c "$f" > /tmp/mnist/MNIST/raw/$(basename "$f" .gz); done
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -4 | tee "$OUT/tests2.txt"
timeout 200 python3 scripts/gpu_steps.py --data-dir /tmp/mnist --steps 3000 --compile --out "$OUT/gpu-steps.json" 2>&1 | grep -v Warning | tee "$OUT/steps.txt"
run() { local name=$1; shift; /usr/bin/time -f "$name wall %e s" "$@" 2>&1 | grep -E "test accuracy|wall|graph|error" | tee -a "$OUT/e2e2.txt"; }
run lecture-10ep python3 -m mnistcnn train --config configs/lecture.toml --device cuda --run-dir /tmp/L
run fast-a python3 -m mnistcnn train --config configs/fast.toml --device cuda --run-dir /tmp/Fa
run fast-b python3 -m mnistcnn train --config configs/fast.toml --device cuda --run-dir /tmp/Fb
for d in /tmp/L /tmp/Fa /tmp/Fb; do python3 -c "
import json,sys; r=[json.loads(l) for l in open('$d/metrics.jsonl')]; t=[x for x in r if x['type']=='test'][0]
print('$d', 'train_seconds %.3f' % t['train_seconds'], 'test_acc %.4f' % t['test_acc'])" | tee -a "$OUT/e2e2.txt"; done
cp /tmp/L/loss.png "$OUT/lecture-gpu-loss.png"
