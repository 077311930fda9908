"""train.amp auto picks bf16 on a CPU only where bf16 is native; explicit bf16 elsewhere warns with its cost.

The CPU's flags are injected, so every branch is checked on any machine."""

from __future__ import annotations

import warnings

import pytest
import torch

from respike_neuro import devices
from respike_neuro.devices import amp_dtype_for, cpu_bf16, cpu_flags

CPU = torch.device("cpu")
EPYC_AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}  # the CI machine of the README figures
SAPPHIRE_RAPIDS = EPYC_AVX2 | {"avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile"}
ICE_LAKE = EPYC_AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}  # AVX-512 but no bf16 instructions
GRAVITON3 = {"fp", "asimd", "sve", "bf16", "i8mm"}


def test_cpu_flags_read_x86_and_arm_cpuinfo():
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\nbugs\t\t: sysret_ss_attrs\n"
    arm = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n"
    assert cpu_flags(x86) == {"fpu", "avx2", "fma"}
    assert cpu_flags(arm) == {"fp", "asimd", "sve", "bf16"}
    assert cpu_flags("processor\t: 0\n") == frozenset()


@pytest.mark.parametrize(
    ("flags", "native"), [(EPYC_AVX2, False), (ICE_LAKE, False), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True)]
)
def test_native_bf16_needs_bf16_instructions_not_just_avx512(flags, native):
    ok, why = cpu_bf16(flags, capability="AVX2")
    assert ok is native
    assert "\n" not in why
    assert ("no native bf16" in why) is not native
    if not native:
        assert "13x slower than fp32" in why  # the recorded cost on the AVX2 EPYC


@pytest.mark.parametrize(
    ("flags", "dtype"), [(EPYC_AVX2, None), (ICE_LAKE, None), (SAPPHIRE_RAPIDS, torch.bfloat16)]
)
def test_auto_on_cpu_is_bf16_only_where_native_and_says_why_in_one_line(flags, dtype):
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert amp_dtype_for("auto", CPU, flags=flags, log=lines.append) == dtype
    (line,) = lines
    assert line.startswith(f"train.amp auto: {'bf16' if dtype else 'fp32'}; ")


def test_auto_on_cuda_stays_fp16_and_off_is_fp32():
    assert amp_dtype_for("auto", torch.device("cuda"), flags=EPYC_AVX2, log=None) == torch.float16
    assert amp_dtype_for("off", CPU, flags=SAPPHIRE_RAPIDS) is None
    assert amp_dtype_for("fp16", CPU, flags=EPYC_AVX2) == torch.float16


def test_explicit_bf16_without_native_support_warns_with_the_measured_cost(monkeypatch):
    monkeypatch.setattr(devices, "bf16_conv_slowdown", lambda: 12.5)
    with pytest.warns(UserWarning, match=r"measured 12\.5x the fp32 time here.*no native bf16"):
        assert amp_dtype_for("bf16", CPU, flags=EPYC_AVX2) == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert amp_dtype_for("bf16", CPU, flags=SAPPHIRE_RAPIDS) == torch.bfloat16


def test_bf16_conv_slowdown_is_a_measured_ratio():
    ratio = devices.bf16_conv_slowdown(repeats=1)
    assert 0 < ratio < 1000
