"""Backbone precision of the official models: chosen by what the CPU computes natively, and compared mode by
mode by scripts/bench_official.py on a tiny random model (seconds)."""

from __future__ import annotations

import warnings

import pytest
import torch

from loc2_engine.models import cpu, dinov2, official
from loc2_engine.models.official import OfficialHeads, build_vigor, kitti_variant
from script_modules import load_script

pytest.importorskip("transformers")

from official_fixtures import files, tiny_dinov2  # noqa: E402,F401


@pytest.mark.parametrize("flags, native", [({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True),
                                           ({"avx512f", "amx_tile", "amx_bf16"}, True)])
def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    assert cpu.native_bf16() == native


@pytest.mark.parametrize("isa, onednn", [("AVX2", False), ("AVX512", True), ("DEFAULT", False)])
def test_float32_blocks_take_onednn_gemms_on_avx512_and_mkl_elsewhere_with_the_same_features(monkeypatch, isa,
                                                                                                onednn):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
    calls = []

    def spy(x, linear, activation="none"):
        calls.append(activation)
        return dinov2.module_linear(x, linear, activation)
    monkeypatch.setattr(dinov2, "onednn_linear", spy)
    vit = tiny_dinov2(layers=2, hidden=128, seed=5)
    backbone = dinov2.Dinov2Backbone(vit)  # binds the official position-embedding resize to vit as well
    x = torch.rand(1, 3, 42, 84, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = vit(pixel_values=x).last_hidden_state[:, 1:].transpose(1, 2).reshape(1, 128, 3, 6)
    out = backbone(x)
    assert cpu.onednn_gemm_faster() == (onednn and torch.backends.mkldnn.is_available())
    assert len(calls) == (2 * 6 if cpu.onednn_gemm_faster() else 0)  # 6 linears per block
    assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_the_backbone_runs_in_float32_unless_asked_and_bfloat16_without_native_support_warns(files, monkeypatch):
    monkeypatch.delenv("LOC2_BACKBONE_DTYPE", raising=False)
    for native in (False, True):  # the exact reference, whatever the CPU
        monkeypatch.setattr(official, "native_bf16", lambda native=native: native)
        model = build_vigor(weights=files["weights"], backbone=files["meta"])
        assert model.backbone.compute_dtype() == torch.float32
    monkeypatch.setenv("LOC2_BACKBONE_DTYPE", "bfloat16")
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        monkeypatch.setattr(official, "native_bf16", lambda: False)
        model = build_vigor(weights=files["weights"], backbone=files["meta"])
    assert model.backbone.compute_dtype() == torch.bfloat16
    monkeypatch.setattr(official, "native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        build_vigor(weights=files["weights"], backbone=files["meta"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao's int8 is deprecated
def test_the_bench_compares_every_mode_with_float32_in_one_run():
    bench = load_script("bench_official")
    vit = tiny_dinov2(hidden=64)
    torch.manual_seed(1)
    heads = OfficialHeads(64).eval()
    int8 = hasattr(torch.ao.quantization, "quantize_dynamic")  # opt-in mode, while torch still has it
    modes = ["float32", "bfloat16"] + (["int8"] if int8 else [])
    rows = bench.compare_modes(modes + ["float32"], vit, heads, kitti_variant(), reps=1, threads=1)
    assert [r["mode"] for r in rows] == modes  # float32 once, first: the reference
    ref = rows[0]
    assert (ref["top-k shared"], ref["top-k identical"], ref["max rel dev"]) == (100, True, 0.0)
    assert ref["speed-up total"] == 1.0
    for row in rows:
        assert all(row[stage] > 0 for stage in bench.STAGES) and row["P"].shape == ref["P"].shape
        assert 0 <= row["top-k shared"] <= 100 and row["max rel dev"] < 0.5  # close to float32, not equal
    # float32 against itself, run again: bit for bit
    again = bench.compare_modes(["float32"], vit, heads, kitti_variant(), reps=1, threads=1)[0]
    assert torch.equal(again["P"], ref["P"])
    table = bench.format_table(rows).splitlines()
    assert len(table) == 2 + len(modes) and all(f"| {m} |" in line for m, line in zip(modes, table[2:]))
