"""Precision settings: what `auto` picks on which hardware, the errors, and bf16 logits beside fp32 ones."""

from __future__ import annotations

import pytest
import torch

from kemdy_adapters import precision
from kemdy_adapters.precision import autocast, resolve_precision


@pytest.mark.parametrize(("flags", "expected"), [
    (("avx2", "fma"), "fp32"),                                   # AVX2 only: bf16 would be emulated
    (("avx2", "avx512f", "avx512_vnni"), "fp32"),                # AVX-512 without its bf16 extension
    (("avx2", "avx512f", "avx512_bf16"), "bf16"),
    (("avx2", "amx_tile", "amx_bf16", "amx_int8"), "bf16"),
])
def test_auto_picks_bf16_only_where_the_cpu_computes_it(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_instruction_sets", lambda: flags)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


def test_bad_precisions_are_named():
    with pytest.raises(ValueError, match="one of"):
        resolve_precision("int4")
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", "cpu")


def test_the_cpu_reports_its_instruction_sets():
    described = precision.hardware("cpu")
    assert described["device"] == "cpu" and described["cpu"]
    assert set(described["cpu_isa"].split()) <= set(precision.CPU_FLAGS) | {torch.backends.cpu.get_cpu_capability()}


def test_bf16_autocast_runs_the_matrix_products_in_bf16():
    layer = torch.nn.Linear(8, 4)
    inputs = torch.randn(3, 8)
    with autocast("fp32"):
        assert layer(inputs).dtype == torch.float32
    with autocast("bf16"):
        low = layer(inputs)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), layer(inputs), atol=0.05)


def test_the_report_lists_lower_precision_as_a_deviation():
    from kemdy_adapters.report import precision_deviations

    assert precision_deviations({"train_precision": "fp32", "inference_precision": "fp32"}) == []
    assert precision_deviations({}) == []  # results from before precision was recorded
    lines = precision_deviations({"device": "cpu", "cpu_isa": "avx2 avx512_bf16", "train_precision": "fp32",
                                  "inference_precision": "bf16"})
    assert lines == ["scoring and routing precision (autocast): bf16 on a CPU with avx2 avx512_bf16 (reference: "
                     "fp32)"]
    (line,) = precision_deviations({"device": "cuda:0", "cuda": "NVIDIA H200", "train_precision": "bf16"})
    assert line == "training precision: bf16 on NVIDIA H200 (reference: fp32)"
