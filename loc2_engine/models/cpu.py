"""What this CPU computes natively: whether the official models' backbone may run in bfloat16 with profit.

bfloat16 only pays on a CPU with bfloat16 instructions (AVX512-BF16 dot products or AMX-BF16 tiles). Without
them oneDNN / PyTorch convert every operand to float32 and back, and a ViT-L/14 block runs several times
*slower* than in float32 (docs/official-models.md §4 lists the measurements and the script that makes them).
"""

from __future__ import annotations

import functools
from typing import FrozenSet

import torch

#: /proc/cpuinfo flags of the native bfloat16 instruction sets
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> FrozenSet[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (Linux); empty where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _torch_probe(name: str) -> bool:
    """torch.cpu's private CPUID probe ``name`` (absent in some versions: then False)."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def native_bf16() -> bool:
    """Whether the CPU has bfloat16 arithmetic: AVX512-BF16 or AMX-BF16 (cpuinfo flags, else torch's CPUID
    probes, for systems without /proc/cpuinfo)."""
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in BF16_FLAGS)
    return _torch_probe("_is_avx512_bf16_supported") or _torch_probe("_is_amx_tile_supported")


def cpu_isa() -> str:
    """A short name of the CPU's vector ISA for reports: torch's dispatch level ("AVX2", "AVX512", ...) plus
    "+BF16" / "+AMX" where those are present."""
    name = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return f"{name}+AMX"
    return f"{name}+BF16" if native_bf16() else name



def onednn_gemm_faster() -> bool:
    """Whether oneDNN's float32 GEMMs beat PyTorch's default (MKL's sgemm) on this CPU, which decides the
    linears of the float32 ViT blocks (`dinov2.cpu_layer_forward`).

    Measured on two AMD EPYCs (docs/official-models.md §4): with AVX-512, oneDNN makes a ViT-L block 1.35×
    faster; with AVX2 only, MKL is faster (1.3× on the MLP GEMM, 1.1× per block). Taken as: AVX-512 -> oneDNN.
    """
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") and torch.backends.mkldnn.is_available()
