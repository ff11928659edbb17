#!/usr/bin/env bash
# Fourth GPU pass: graph-vs-eager (test and step-for-step through `mnistcnn train`), recipes with --compile.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" /tmp/mnist/MNIST/raw
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MNISTCNN_DATA_DIR=/tmp/mnist
R=$(mktemp -d)
for f in .gpu/raw/*.gz; do gunzip -c "$f" > /tmp/mnist/MNIST/raw/$(basename "$f" .gz); done
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | grep -E "passed|failed|Mismatch|Greatest" | tee "$OUT/tests4.txt"
run() { local name=$1; shift; /usr/bin/time -f "$name wall %e s" "$@" 2>&1 | grep -E "test accuracy|wall|graph|error" | tee -a "$OUT/e2e4.txt"; }
run g python3 -m mnistcnn train --config configs/lecture.toml --epochs 1 --train-limit 2005 --device cuda --run-dir $R/g
run e python3 -m mnistcnn train --config configs/lecture.toml --epochs 1 --train-limit 2005 --device cuda --no-cuda-graphs --run-dir $R/e
run lecture-compile python3 -m mnistcnn train --config configs/lecture.toml --device cuda --compile --run-dir $R/L
run fast-compile python3 -m mnistcnn train --config configs/fast.toml --device cuda --compile --run-dir $R/F
python3 - "$R" <<'PY' | tee -a "$OUT/e2e4.txt"
import json, sys
R = sys.argv[1]
def recs(d): return [json.loads(l) for l in open(f"{R}/{d}/metrics.jsonl")]
g = [r["loss"] for r in recs("g") if r["type"] == "batch"]; e = [r["loss"] for r in recs("e") if r["type"] == "batch"]
d = [abs(a - b) for a, b in zip(g, e)]
print("graph vs eager steps", len(g), len(e), "max abs diff", max(d), "first >1e-4 at", next((i for i, x in enumerate(d) if x > 1e-4), None))
for x in ("L", "F"):
    t = [r for r in recs(x) if r["type"] == "test"][0]
    print(x, "train_seconds %.3f" % t["train_seconds"], "test_acc %.4f" % t["test_acc"])
PY
