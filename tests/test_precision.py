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


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_the_bf16_feature_encoder_matches_the_module(norm):
    """The convolutions as bf16 matrix products (with the first layer's group norm folded into its weights)
    compute what Wav2Vec2's own feature encoder computes, up to bf16 rounding; the model takes that path only
    under bf16 autocast without gradients."""
    from transformers import Wav2Vec2Model

    from kemdy_adapters.modeling import MultimodalEmotionModel, conv_features_bf16
    from kemdy_adapters.tiny import tiny_speech_config, tiny_text_config

    torch.manual_seed(0)
    speech = Wav2Vec2Model(tiny_speech_config(norm)).eval()
    waveform = torch.randn(12000) * 3 + 0.5
    with torch.no_grad():
        reference = speech.feature_extractor(waveform[None])[0].t()  # (T, C)
        fast = conv_features_bf16(speech.feature_extractor, waveform)
    assert fast.shape == reference.shape and fast.dtype == torch.float32
    assert float((fast - reference).norm() / reference.norm()) < 0.03
    assert not torch.equal(fast, reference)

    from kemdy_adapters.configuration import MultimodalEmotionConfig

    model = MultimodalEmotionModel(MultimodalEmotionConfig(text_config=tiny_text_config(vocab_size=64),
                                                           speech_config=tiny_speech_config(norm))).eval()
    values = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    values[1, 9000:] = 0
    with torch.no_grad():
        exact, exact_mask = model.speech_frames(values, mask)
        with autocast("bf16"):
            low, low_mask = model.speech_frames(values, mask)
    assert torch.equal(exact_mask, low_mask) and low.shape == exact.shape
    assert not torch.equal(low, exact)  # the bf16 path ran
    assert float((low - exact)[low_mask].norm() / exact[exact_mask].norm()) < 0.03
    assert torch.all(low[~low_mask] == 0)  # padded frames stay empty


def test_serving_in_bf16_stores_linear_weights_in_bf16_and_int8_stays_fp32():
    from kemdy_adapters.precision import cast_linear_weights

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    cast_linear_weights(model, torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float32
    with autocast("bf16"):
        assert model[0](torch.randn(2, 4)).dtype == torch.bfloat16
    cast_linear_weights(model, torch.float32)
    assert model[0].weight.dtype == torch.float32
