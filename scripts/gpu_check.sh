#!/usr/bin/env bash
# Every GPU check in one run (the device machine is lent for minutes): tests, benchmark, graphs on/off,
# torchrun world size 1 vs plain. Expects MNIST's raw files gzipped in .gpu/raw; writes results to $OUT.
# Run: bash scripts/gpu_check.sh   (on a machine with a CUDA GPU and torch, torchvision, typer, rich, matplotlib)
LOG=variants.txt
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m mnistcnn data verify | tee -a "$OUT/gpu.txt"

echo "== tests (GPU paths)"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_train.py 2>&1 | tail -5 | tee "$OUT/tests.txt"

echo "== benchmark"
timeout 300 python3 scripts/bench.py --device cuda --batch-size 128 --images 60000 --lecture-epoch-images 20000 \
  --repeats 3 --lecture-e2e --out "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench.txt"

echo "== graphs off vs on (lecture recipe, 1 epoch) and torchrun world size 1 (fast recipe)"
run lecture-1ep-graphs python3 -m mnistcnn train --config configs/lecture.toml --epochs 1 --device cuda --run-dir /tmp/r1
run lecture-1ep-nographs python3 -m mnistcnn train --config configs/lecture.toml --epochs 1 --device cuda --no-cuda-graphs --run-dir /tmp/r2
for i in 1 2; do
  run fast-plain-$i python3 -m mnistcnn train --config configs/fast.toml --device cuda --run-dir /tmp/f$i
  run fast-torchrun1-$i python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m mnistcnn train --config configs/fast.toml --device cuda --run-dir /tmp/d$i
  run fast-plain-nographs-$i python3 -m mnistcnn train --config configs/fast.toml --device cuda --no-cuda-graphs --run-dir /tmp/g$i
  run fast-torchrun1-nographs-$i python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m mnistcnn train --config configs/fast.toml --device cuda --no-cuda-graphs --run-dir /tmp/e$i
done
summarize /tmp/[fdge][12] /tmp/r1 /tmp/r2
cp /tmp/r1/loss.png "$OUT/lecture-1ep-loss.png" 2>/dev/null || true
