"""Where and how the arithmetic runs: device choice, precision (autocast), memory format.

Usage: `device = resolve_device("auto"); precision = resolve_precision("auto", device)`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from mnistcnn.errors import MnistcnnError


def resolve_device(name: str) -> torch.device:
    """auto = cuda → mps → cpu; asking for a device that is absent is a MnistcnnError."""
    name = name.strip().lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if has_mps else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MnistcnnError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MnistcnnError(
                "device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise MnistcnnError(
                f"device cuda:{index} does not exist ({torch.cuda.device_count()} GPU(s) visible); "
                "pick cuda:0..cuda:N-1"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not has_mps:
        raise MnistcnnError("device mps was asked for but MPS is not available; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise MnistcnnError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_flags() -> list[str]:
    """The vector and matrix extensions among the CPU flags (avx*, amx*): what decides the CPU's fast paths."""
    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))


ENV_CPU_BF16 = "MNISTCNN_CPU_BF16"  # "1" or "0": overrides the CPU detection below (tests run both paths)


def cpu_has_fast_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16: without them bf16 autocast on the CPU is emulated and several times slower.

    $MNISTCNN_CPU_BF16=1 (or 0) says yes (or no) whatever the CPU, so any machine can run either path."""
    forced = os.environ.get(ENV_CPU_BF16, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise MnistcnnError(f"${ENV_CPU_BF16} must be 1 or 0 (or unset); got {forced!r}")
        return forced == "1"
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise MnistcnnError("this GPU has no bf16 support; use --precision fp16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    # no weight-cast cache: a captured CUDA graph must recompute the casts from the updated weights
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def use_channels_last(setting: str, device: torch.device) -> bool:
    """channels_last measured faster for MyNet on x86 CPUs (oneDNN); on CUDA the convs are too small to care."""
    if setting == "auto":
        return device.type == "cpu"
    return setting == "on"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_name()} CPU, {torch.get_num_threads()} threads"
    return device.type
