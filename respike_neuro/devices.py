"""Device, precision and seeding of a torch run (train, evaluate): one place that reads the config's names."""

from __future__ import annotations

import platform
import random
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from respike_neuro.config import ConfigError
from respike_neuro.config.run import MEMORY_FORMATS

if TYPE_CHECKING:
    from respike_neuro.distributed import DistInfo


def seed_worker(worker_id: int) -> None:
    """Seed numpy/python in each DataLoader worker from the torch seed DataLoader gave it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but CUDA is not available")
        if info is not None and info.enabled and device.index is None:
            device = torch.device("cuda", info.local_rank)
    return device


# x86: AVX512-BF16 (Cooper Lake, Sapphire Rapids, Zen 4+) or AMX-BF16 (Sapphire Rapids+); ARM: FEAT_BF16
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# README "Measured figures": bf16 autocast training step / fp32 on a 2-core AMD EPYC (AVX2, no bf16)
RECORDED_BF16_SLOWDOWN = "13x slower than fp32 (ReSpike training step, 2-core AMD EPYC, AVX2)"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: x86 `flags` or ARM `Features` of /proc/cpuinfo (empty where unreadable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16(flags: Iterable[str] | None = None, capability: str | None = None) -> tuple[bool, str]:
    """(native bf16 on this CPU?, one line saying why). `flags`/`capability` injectable for tests.

    Native means instructions that compute in bf16 (AVX512-BF16, AMX-BF16, ARM BF16). Without them
    torch emulates bf16 by converting to fp32 and back around every op, which made our training step
    13x slower than fp32 on an AVX2 AMD EPYC: autocast there costs time and saves little memory.
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    if capability is None:
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except Exception:  # noqa: BLE001 - older torch: the flags decide alone
            capability = "unknown"
    native = sorted(NATIVE_BF16_FLAGS & flags)
    if native:
        return True, f"CPU has native bf16 ({', '.join(native)}; torch kernels {capability})"
    return False, (
        f"CPU has no native bf16 (no avx512_bf16/amx_bf16/ARM bf16 flag; torch kernels {capability} on "
        f"{platform.machine()}): bf16 would be emulated, {RECORDED_BF16_SLOWDOWN}"
    )


def bf16_conv_slowdown(repeats: int = 3) -> float:
    """Measured here: time of a 3x3 conv forward+backward under bf16 autocast / in fp32 (CPU)."""
    torch.manual_seed(0)
    x = torch.randn(8, 64, 28, 28, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, requires_grad=True)

    def best(dtype: torch.dtype | None) -> float:
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                y = torch.nn.functional.conv2d(x, w, padding=1)
            y.float().sum().backward()
            times.append(time.perf_counter() - t0)
        return min(times[1:])

    return best(torch.bfloat16) / best(None)


def amp_dtype_for(
    amp: str, device: torch.device, *, flags: Iterable[str] | None = None, log=print
) -> torch.dtype | None:
    """The autocast dtype of train.amp on `device` (None: fp32).

    auto: fp16 (+ GradScaler) on CUDA; on a CPU bf16 only where the CPU computes bf16 natively, fp32
    otherwise (one line says why). An explicit bf16 on a CPU without native bf16 is honoured with a
    warning that gives its cost, measured on this CPU.
    """
    if amp == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type != "cpu":
            return None
        native, why = cpu_bf16(flags)
        if log is not None:
            log(f"train.amp auto: {'bf16' if native else 'fp32'}; {why}")
        return torch.bfloat16 if native else None
    dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    if dtype == torch.bfloat16 and device.type == "cpu":
        native, why = cpu_bf16(flags)
        if not native:
            warnings.warn(
                f"train.amp bf16 on a CPU without native bf16 is slow: bf16 conv measured "
                f"{bf16_conv_slowdown():.1f}x the fp32 time here; {why}. Use train.amp auto or off.",
                stacklevel=2,
            )
    return dtype


def memory_format_for(
    choice: str, device: torch.device, *, machine: str | None = None, log=print
) -> torch.memory_format:
    """The layout of train.memory_format on `device` (`machine`: platform.machine(), for tests).

    auto: channels-last on an x86-64 CPU, where oneDNN's convs work in NHWC and a contiguous (NCHW)
    model pays a reorder into and out of every conv: a contiguous copy of the model took 1.18x the
    channels-last step at the reference config and 1.10x at make run's size, 1.07x / 1.05x with
    torch's and oneDNN's AVX2 kernels forced (benchmarks/train_step.py --alternate contiguous, 2-core
    AMD EPYC Zen 4; README). Contiguous elsewhere (ARM CPUs, CUDA), where it was not measured.
    """
    if choice not in MEMORY_FORMATS:
        raise ConfigError(f"train.memory_format must be one of {list(MEMORY_FORMATS)}, got {choice!r}")
    if choice == "auto":
        x86 = (machine or platform.machine()).lower() in ("x86_64", "amd64")
        choice = "channels_last" if device.type == "cpu" and x86 else "contiguous"
        if log is not None and device.type == "cpu":
            why = "oneDNN's convs run in NHWC" if x86 else "not an x86-64 CPU: unmeasured"
            log(f"train.memory_format auto: {choice} ({why})")
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format
