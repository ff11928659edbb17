#!/usr/bin/env bash
# Fourth GPU pass: graph-vs-eager (test and step-for-step through `mnistcnn train`), recipes with --compile.
LOG=e2e4.txt
source "$(dirname "$0")/gpu_env.sh"
R=$(mktemp -d)
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | grep -E "passed|failed|Mismatch|Greatest" | tee "$OUT/tests4.txt"
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
PY
summarize $R/L $R/F
