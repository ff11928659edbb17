# Sourced by the gpu_check scripts: output folder, MNIST unpacked from .gpu/raw/*.gz, and two helpers.
#   run NAME CMD...      time CMD, keep its accuracy/wall/graph/error lines in $OUT/$LOG
#   summarize DIR...     one line per run folder: training seconds and test accuracy (from metrics.jsonl)
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" /tmp/mnist/MNIST/raw
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MNISTCNN_DATA_DIR=/tmp/mnist
for f in .gpu/raw/*.gz; do gunzip -c "$f" > /tmp/mnist/MNIST/raw/$(basename "$f" .gz); done
run() { local name=$1; shift; /usr/bin/time -f "$name wall %e s" "$@" 2>&1 | grep -E "test accuracy|wall|graph|error" | tee -a "$OUT/$LOG"; }
summarize() {
  python3 - "$@" <<'PY' | tee -a "$OUT/$LOG"
import json, sys
for d in sys.argv[1:]:
    try:
        recs = [json.loads(line) for line in open(f"{d}/metrics.jsonl")]
    except OSError:
        continue
    t = next(r for r in recs if r["type"] == "test")
    print(d, "train_seconds %.3f" % t["train_seconds"], "test_acc %.4f" % t["test_acc"])
PY
}
