"""The cached output of the frozen feature encoder gives the same logits as the waveform, keyed by encoder."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from kemdy_adapters.data import MultimodalCollator
from kemdy_adapters.features import feature_encoder_digest, with_speech_features
from kemdy_adapters.modeling import MultimodalEmotionModel


def test_cached_features_give_identical_logits_and_are_keyed_by_encoder(tiny_checkpoints, prepared_data):
    model = MultimodalEmotionModel.from_encoders(*tiny_checkpoints, tasks={"kemdy19": None}, projector_size=16)
    model.set_active_task("kemdy19")
    model.eval()
    collator = MultimodalCollator(AutoTokenizer.from_pretrained(tiny_checkpoints[0]))
    waveforms = prepared_data["kemdy19"]["test"]
    cached = with_speech_features(waveforms, model)
    assert "input_values" not in cached.column_names and cached["id"] == waveforms["id"]
    rows = list(range(6))
    from_audio = collator([waveforms[i] for i in rows])
    from_cache = collator([cached[i] for i in rows])
    assert from_cache["speech_features"].shape[-1] == model.speech_encoder.config.conv_dim[-1]
    with torch.no_grad():
        assert torch.equal(model(**from_audio).logits, model(**from_cache).logits)

    # The same encoder reuses the cache; another encoder (other weights) gets its own entry.
    assert with_speech_features(waveforms, model).cache_files == cached.cache_files
    other = MultimodalEmotionModel.from_encoders(*tiny_checkpoints, pretrained=False, projector_size=16)
    assert feature_encoder_digest(other) != feature_encoder_digest(model)
    assert with_speech_features(waveforms, other).cache_files != cached.cache_files


def test_layer_boundary_cache_gives_the_same_logits_and_its_own_entry(tiny_checkpoints, prepared_data):
    model = MultimodalEmotionModel.from_encoders(*tiny_checkpoints, projector_size=16, speech_frozen_layers=1)
    model.add_task("kemdy19")
    model.train_task("kemdy19")  # the adapter strategy: nothing below layer 1 trains
    model.eval()
    collator = MultimodalCollator(AutoTokenizer.from_pretrained(tiny_checkpoints[0]))
    waveforms = prepared_data["kemdy19"]["test"]
    cached = with_speech_features(waveforms, model)
    assert "speech_hidden" in cached.column_names and "speech_features" not in cached.column_names
    rows = list(range(6))
    from_audio = collator([waveforms[i] for i in rows])
    from_cache = collator([cached[i] for i in rows])
    assert from_cache["speech_hidden"].shape[-1] == model.speech_encoder.config.hidden_size
    with torch.no_grad():
        torch.testing.assert_close(model(**from_cache).logits, model(**from_audio).logits, atol=1e-5, rtol=1e-4)
    conv_only = MultimodalEmotionModel.from_encoders(*tiny_checkpoints, projector_size=16)
    assert feature_encoder_digest(conv_only) != feature_encoder_digest(model)
    assert with_speech_features(waveforms, conv_only).cache_files != cached.cache_files


def test_a_two_fold_benchmark_prepares_and_caches_each_utterance_once(tiny_checkpoints, sample_corpus, tmp_path,
                                                                       monkeypatch):
    """Tokenisation, waveform preparation and the frozen speech part run once per utterance of each corpus, not
    once per fold: the folds select their rows from one prepared, cached corpus."""
    from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments
    from kemdy_adapters.data import MultimodalProcessor

    counts = {"prepared": 0, "encoded": 0}
    prepare, frozen = MultimodalProcessor.__call__, MultimodalEmotionModel.frozen_speech

    def counted_prepare(self, batch):
        counts["prepared"] += len(batch["text"])
        return prepare(self, batch)

    def counted_frozen(self, input_values, *args, **kwargs):
        counts["encoded"] += input_values.shape[0]
        return frozen(self, input_values, *args, **kwargs)

    monkeypatch.setattr(MultimodalProcessor, "__call__", counted_prepare)
    monkeypatch.setattr(MultimodalEmotionModel, "frozen_speech", counted_frozen)
    text, speech = tiny_checkpoints
    cache = str(tmp_path / "hf_cache")  # empty: nothing is read from another test's cache
    arguments = parse_benchmark_arguments([
        "--output_dir", str(tmp_path / "bench"), "--data_dir", str(sample_corpus), "--text_model", text,
        "--speech_model", speech, "--strategies", "task_a", "adapter", "--folds", "0", "1", "--num_train_epochs", "1",
        "--learning_rate", "1e-3", "--projector_size", "16", "--max_speech_seconds", "2", "--dataset_cache_dir",
        cache, "--disable_tqdm", "true"])
    results = Benchmark(*arguments).run()
    assert sorted(cell["fold"] for cell in results["strategies"]["adapter"]["folds"]) == [0, 0, 1, 1]  # 2 orders
    assert sorted(results["floors"]) == ["kemdy19", "kemdy20"]  # the floors read the same audio column
    data_args = arguments[2]
    utterances = sum(len(data_args.task_spec(task, {}).load(cache_dir=cache)) for task in ("kemdy19", "kemdy20"))
    assert counts == {"prepared": utterances, "encoded": utterances}
