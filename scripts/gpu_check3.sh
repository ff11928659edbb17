#!/usr/bin/env bash
# Third GPU pass: graph-vs-eager test, and both recipes end to end with --compile.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" /tmp/mnist/MNIST/raw
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MNISTCNN_DATA_DIR=/tmp/mnist
for f in .gpu/raw/*.gz; do gunzip -c "$f" > /tmp/mnist/MNIST/raw/$(basename "$f" .gz); done
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | grep -E "passed|failed|Mismatch|Greatest" | tee "$OUT/tests3.txt"
run() { local name=$1; shift; /usr/bin/time -f "$name wall %e s" "$@" 2>&1 | grep -E "test accuracy|wall|graph|error" | tee -a "$OUT/e2e3.txt"; }
run lecture-compile python3 -m mnistcnn train --config configs/lecture.toml --device cuda --compile --run-dir /tmp/L
run fast-compile python3 -m mnistcnn train --config configs/fast.toml --device cuda --compile --run-dir /tmp/Fa
run fast-plain python3 -m mnistcnn train --config configs/fast.toml --device cuda --run-dir /tmp/Fb
for d in /tmp/L /tmp/Fa /tmp/Fb; do python3 -c "
import json; r=[json.loads(l) for l in open('$d/metrics.jsonl')]; t=[x for x in r if x['type']=='test'][0]
print('$d', 'train_seconds %.3f' % t['train_seconds'], 'test_acc %.4f' % t['test_acc'])" | tee -a "$OUT/e2e3.txt"; done
