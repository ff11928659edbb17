"""The CPU allocator setting: training steps stop page-faulting their activations in again."""

import platform
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mnistcnn import hostalloc
from mnistcnn.cli import app

glibc = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)

STEPS = """
import resource, sys, torch, torch.nn.functional as F
from mnistcnn.hostalloc import tune_host_allocator
from mnistcnn.model import MyNet
if sys.argv[1] == "tuned":
    assert tune_host_allocator()
torch.manual_seed(0)
model = MyNet().to(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), foreach=True)
x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (64,))
def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(10):
    step()
counts = []
for _ in range(15):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(counts)[len(counts) // 2])  # the median step: a burst of reclaim elsewhere does not count
"""


def faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


@glibc
def test_tuned_steps_do_not_page_fault():
    # glibc's defaults fault ~2,100-3,250 pages in per batch-64 step here; tuned, the median step faults none
    # (averages over 10 steps were 0-40: occasional bursts, e.g. the host reclaiming idle pages)
    assert faults_per_step("tuned") < 50


def test_the_command_tunes_the_allocator(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(hostalloc, "tune_host_allocator", lambda: calls.append(1) or True)
    result = CliRunner().invoke(app, ["data", "verify", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and calls == [1]


def test_not_applicable_elsewhere(monkeypatch):
    monkeypatch.setattr(hostalloc.sys, "platform", "darwin")
    assert hostalloc.tune_host_allocator() is False


CYCLE = """
import gc, sys
from mnistcnn.hostalloc import skip_exit_collection
if sys.argv[1] == "skip":
    skip_exit_collection()
class Cycle:
    def __del__(self):
        print("collected at exit")
c = Cycle(); c.me = c; del c
gc.disable()  # so only the collections of interpreter shutdown could reach the cycle
"""


@pytest.mark.parametrize("mode", ["default", "skip"])
def test_exit_collection_is_skipped(mode):
    proc = subprocess.run([sys.executable, "-c", CYCLE, mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ("collected at exit" in proc.stdout) == (mode == "default")
