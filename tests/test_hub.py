"""Sharing and serving: push (dry run and upload), model cards, loading by repo id from an offline Hugging Face
cache, load errors, `predict` on every kind of input, and task-agnostic routing."""

from __future__ import annotations

import csv
import json
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments
from kemdy_adapters.cli import main
from kemdy_adapters.data import MultimodalCollator, MultimodalProcessor, load_task_splits, model_batches
from kemdy_adapters.export import TaskExportError
from kemdy_adapters.hub import add_to_cache, card_yaml, resolve_task
from kemdy_adapters.inference import EmotionRecognizer, InputError, load_audio
from kemdy_adapters.metrics import classification_scores
from kemdy_adapters.modeling import MultimodalEmotionModel

REPO = "kemdy-lab/kemdy19-adapter"
PUSHED = ["README.md", "config.json", "model.safetensors", "routing.safetensors", "task_config.json"]


@pytest.fixture(scope="module")
def benchmark(tiny_checkpoints, sample_corpus, hf_cache, tmp_path_factory):
    """The adapter strategy, fold 0, both orders: two cells with exports, routing statistics and scores."""
    output = tmp_path_factory.mktemp("hub_bench")
    text, speech = tiny_checkpoints
    arguments = parse_benchmark_arguments([
        "--output_dir", str(output), "--data_dir", str(sample_corpus), "--text_model", text, "--speech_model",
        speech, "--strategies", "adapter", "--folds", "0", "--num_train_epochs", "2", "--learning_rate", "5e-3",
        "--projector_size", "16", "--max_speech_seconds", "2", "--dataset_cache_dir", hf_cache,
        "--disable_tqdm", "true", "--figures", "false",
    ])
    results = Benchmark(*arguments).run()
    return output, results


@pytest.fixture(scope="module")
def pushed(benchmark, tmp_path_factory):
    output, _ = benchmark
    folder = tmp_path_factory.mktemp("push") / "kemdy19"
    assert main(["push", "--task", "kemdy19", "--from", str(output), "--repo-id", REPO, "--to-dir", str(folder),
                 "--dry-run"]) == 0
    return folder


def test_push_dry_run_folder_and_card(benchmark, pushed):
    output, results = benchmark
    assert sorted(path.name for path in pushed.iterdir()) == PUSHED  # no pickle, no data, nothing else
    card = (pushed / "README.md").read_text()
    metadata = card_yaml(card)
    assert "adapter-transformers" in metadata["tags"] and metadata["library_name"] == "kemdy-adapters"
    assert metadata["pipeline_tag"] == "audio-classification" and metadata["datasets"] == ["kemdy19"]
    final = results["strategies"]["adapter"]["final"]["kemdy19>kemdy20"]["kemdy19"]
    metrics = {metric["name"]: metric["value"] for metric in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics["weighted F1"] == round(final["weighted_f1"]["mean"], 4)
    assert metrics["macro F1"] == round(final["macro_f1"]["mean"], 4)
    assert metrics["UAR (unweighted average recall)"] == round(final["uar"]["mean"], 4)
    # The Hub's own parser reads the same results.
    from huggingface_hub import ModelCard

    parsed = ModelCard(card).data
    assert {result.metric_name for result in parsed.eval_results} == set(metrics)
    assert "never be uploaded" in card and "$" not in card.split("---", 2)[2].replace("$ ", "")
    assert f'EmotionRecognizer.from_pretrained("{REPO}")' in card


def test_pushed_folder_reproduces_the_runs_scores(benchmark, pushed, tiny_checkpoints, sample_corpus, hf_cache):
    output, results = benchmark
    text, speech = tiny_checkpoints
    model = MultimodalEmotionModel.from_encoders(text, speech, projector_size=16)
    model.load_task(pushed)
    model.eval()
    processor = MultimodalProcessor.from_checkpoints(text, speech, max_speech_seconds=2)
    test = load_task_splits("kemdy19", sample_corpus, 0, processor, cache_dir=hf_cache)["test"]
    predictions, references = [], []
    with torch.no_grad():
        for batch in model_batches(test, MultimodalCollator(processor.tokenizer), 8, model.device):
            predictions += model(**batch, task="kemdy19").logits.argmax(-1).tolist()
            references += batch["labels"].tolist()
    scores = classification_scores(predictions, references)
    run = json.loads((output / "runs/adapter/fold0/kemdy19-kemdy20/results.json").read_text())
    assert scores["weighted_f1"] == pytest.approx(run["matrix"]["weighted_f1"][0][0], abs=1e-9)
    assert scores["macro_f1"] == pytest.approx(run["matrix"]["macro_f1"][0][0], abs=1e-9)


def test_push_uploads_exactly_the_prepared_folder_privately(pushed, monkeypatch, capsys):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"})()

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    source = pushed.parent / "again"
    shutil.copytree(pushed, source / "kemdy19" / "export")  # a minimal run folder: <task>/export
    assert main(["push", "--task", "kemdy19", "--from", str(source), "--repo-id", REPO, "--to-dir",
                 str(source / "upload")]) == 0
    create = next(call for call in calls if call[0] == "create_repo")
    assert create[1] == REPO and create[2]["private"] is True
    upload = next(call for call in calls if call[0] == "upload_folder")[1]
    assert upload["folder_path"] == str(source / "upload") and upload["repo_id"] == REPO
    assert sorted(path.name for path in (source / "upload").iterdir()) == PUSHED
    out = capsys.readouterr().out
    assert "private repository" in out and "must never be uploaded" in out
    # Without its run's scores the card says so instead of inventing numbers.
    card = (source / "upload" / "README.md").read_text()
    assert "| weighted F1 | not measured |" in card and "model-index" not in card_yaml(card)


def hub_cache(tmp_path, folder, repo_id: str = REPO):
    """The Hugging Face cache layout (refs/main -> snapshots/<commit>/files) holding `folder` as `repo_id`."""
    snapshot = add_to_cache(folder, repo_id, tmp_path / "hub", commit="0123456789abcdef0123456789abcdef01234567")
    assert (tmp_path / "hub" / ("models--" + repo_id.replace("/", "--")) / "refs" / "main").read_text() == \
        snapshot.name
    return tmp_path / "hub"


def test_load_by_repo_id_offline_from_the_cache(pushed, tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE, "tests run with HF_HUB_OFFLINE=1 (conftest)"
    cache = hub_cache(tmp_path, pushed)
    folder = resolve_task(REPO, cache_dir=cache)
    assert folder.parent.name == "snapshots" and sorted(p.name for p in folder.iterdir()) == PUSHED
    recognizer = EmotionRecognizer.from_pretrained(REPO, cache_dir=cache)
    local = EmotionRecognizer.from_pretrained(pushed)
    assert recognizer.tasks == local.tasks == ["kemdy19"]
    config = json.loads((pushed / "task_config.json").read_text())
    model = MultimodalEmotionModel.from_encoders(config["base"]["text_checkpoint"],
                                                 config["base"]["speech_checkpoint"], projector_size=16)
    assert model.load_task(REPO, cache_dir=cache) == "kemdy19"  # the model API resolves repo ids too
    from transformers import pipeline

    import kemdy_adapters.pipelines  # noqa: F401 - registers the pipeline

    classifier = pipeline("multimodal-emotion-recognition", model=REPO, model_kwargs={"cache_dir": cache})
    assert classifier.model.recognizer.tasks == ["kemdy19"]
    with pytest.raises(TaskExportError, match="not in the Hugging Face cache"):
        resolve_task("kemdy-lab/unknown-task", cache_dir=cache)


def test_load_errors(pushed, tmp_path):
    from test_modeling import tiny_model

    other = tiny_model(tasks=())
    with pytest.raises(TaskExportError, match="does not fit this model: text encoder vocab_size"):
        other.load_task(pushed)
    from kemdy_adapters.export import load_task

    config = json.loads((pushed / "task_config.json").read_text())
    text, speech = config["base"]["text_checkpoint"], config["base"]["speech_checkpoint"]
    model = MultimodalEmotionModel.from_encoders(text, speech, projector_size=16)
    with pytest.raises(TaskExportError, match="label set"):
        load_task(model, pushed, expected_labels=["neutral", "happy"])
    broken = tmp_path / "broken"
    shutil.copytree(pushed, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(TaskExportError, match=r"model.safetensors: missing \(the task.s integrity record lists it\)"):
        EmotionRecognizer.from_pretrained(broken)
    with pytest.raises(TaskExportError, match="not a Hub repo id"):
        EmotionRecognizer.from_pretrained(tmp_path / "no" / "such" / "folder")


@pytest.fixture(scope="module")
def inputs(sample_corpus, tmp_path_factory):
    """Generated wavs of one sample utterance at 8, 16 and 44.1 kHz, mono and stereo, and every bad input."""
    folder = tmp_path_factory.mktemp("predict")
    source = sorted((sample_corpus / "KEMDy19" / "wav").rglob("*.wav"))[0]
    audio, rate = sf.read(source, dtype="float32")
    assert rate == 16000
    text = "오늘 정말 기분이 좋아"
    rows = []
    for rate_out in (8000, 16000, 44100):
        for channels in (1, 2):
            data = soxr.resample(audio, 16000, rate_out) if rate_out != 16000 else audio
            data = np.stack([data, 0.5 * data], axis=1) if channels == 2 else data
            path = folder / f"utt_{rate_out}_{channels}ch.wav"
            sf.write(path, data, rate_out)
            rows.append({"id": path.stem, "audio": path.name, "text": text})
    (folder / "utt_16000_1ch.txt").write_text("b/ 오늘 정말 기분이 좋아 /\n", encoding="utf-8")
    sf.write(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(folder / "short.wav", audio[:800], 16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav")
    rows += [{"id": "empty_text", "audio": "utt_16000_1ch.wav", "text": "   "},
             {"id": "silent", "audio": "silent.wav", "text": text},
             {"id": "short", "audio": "short.wav", "text": text},
             {"id": "broken", "audio": "broken.wav", "text": text},
             {"id": "no_transcript", "audio": "utt_8000_1ch.wav", "text": ""}]
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=["id", "audio", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return folder, audio


def test_audio_is_converted_to_16k_mono(inputs):
    folder, audio = inputs
    reference = load_audio(folder / "utt_16000_1ch.wav")
    np.testing.assert_allclose(reference, audio, atol=1e-4)
    for name in ("utt_8000_1ch", "utt_44100_1ch", "utt_44100_2ch", "utt_16000_2ch", "utt_8000_2ch"):
        converted = load_audio(folder / f"{name}.wav")
        assert abs(len(converted) - len(audio)) <= 2, name
        n = min(len(converted), len(audio))
        scale = 0.75 if name.endswith("2ch") else 1.0  # the mean of the channels (1 and 0.5)
        correlation = np.corrcoef(converted[:n], scale * audio[:n])[0, 1]
        assert correlation > (0.9 if "8000" in name else 0.999), (name, correlation)
    stereo_array = np.stack([audio, audio])  # channels x samples, at 44.1 kHz
    assert len(load_audio(soxr.resample(stereo_array.T, 16000, 44100).T, sampling_rate=44100)) == pytest.approx(
        len(audio), abs=2)
    for bad, message in (("silent.wav", "silent"), ("short.wav", "too short"), ("broken.wav", "unreadable audio")):
        with pytest.raises(InputError, match=message):
            load_audio(folder / bad)
    with pytest.raises(InputError, match="needs its sampling_rate"):
        load_audio(audio)


def test_predict_manifest_writes_json_lines_and_per_item_errors(pushed, inputs, tmp_path, capsys):
    folder, _ = inputs
    output = tmp_path / "predictions.jsonl"
    code = main(["predict", "--task", str(pushed), "--manifest", str(folder / "manifest.csv"), "--output",
                 str(output)])
    assert code == 2  # some items failed, the batch went on
    records = {record["id"]: record for record in map(json.loads, output.read_text().splitlines())}
    assert len(records) == 11
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    good = [record for record in records.values() if "error" not in record]
    assert len(good) == 8
    for record in good:
        assert list(record["probabilities"]) == labels and sum(record["probabilities"].values()) == pytest.approx(1,
                                                                                                                abs=1e-4)
        assert record["emotion"] == max(record["probabilities"], key=record["probabilities"].get)
        assert record["task"] == "kemdy19" and record["routed"] is False and record["seconds"] > 0
    assert records["utt_16000_1ch"]["emotion"] == records["utt_44100_1ch"]["emotion"]
    # A blank text cell reads the .txt beside the wav; with none there, the utterance is classified from speech.
    assert records["empty_text"]["transcript"] == "file" and records["no_transcript"]["transcript"] == "none"
    assert records["utt_16000_1ch"]["transcript"] == "given"
    assert "silent" in records["silent"]["error"] and "too short" in records["short"]["error"]
    assert "broken.wav: unreadable audio" in records["broken"]["error"]
    err = capsys.readouterr().err
    assert "8 of 11 utterances classified (3 errors)" in err


def test_predict_one_wav_with_the_transcript_beside_it(pushed, inputs, capsys):
    folder, _ = inputs
    assert main(["predict", "--task", str(pushed), "--wav", str(folder / "utt_16000_1ch.wav")]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["id"] == "utt_16000_1ch" and record["emotion"] in record["probabilities"]


def test_routing_beats_chance_on_the_sample_corpus(benchmark):
    output, results = benchmark
    agnostic = results["strategies"]["adapter"]["task_agnostic"]
    accuracy = agnostic["routing_accuracy"]
    assert set(accuracy) == {"shallow", "frozen", "confidence"}
    assert accuracy[agnostic["method"]]["mean"] >= 0.8  # two corpora: chance is 0.5
    for metric in ("weighted_f1", "macro_f1", "uar"):
        assert 0 <= agnostic["agnostic"][metric]["mean"] <= 1
    cell = json.loads((output / "runs/adapter/fold0/kemdy19-kemdy20/results.json").read_text())
    routed = cell["task_agnostic"]["routed_to"]
    assert sum(routed["kemdy19"].values()) + sum(routed["kemdy20"].values()) > 0
    assert "## Without the task id" in (output / "results.md").read_text()


def test_recognizer_routes_between_two_tasks(benchmark, inputs):
    output, _ = benchmark
    run = output / "runs/adapter/fold0/kemdy19-kemdy20"
    recognizer = EmotionRecognizer.from_pretrained([run / "kemdy19" / "export", run / "kemdy20" / "export"])
    assert recognizer.router is not None and recognizer.tasks == ["kemdy19", "kemdy20"]
    folder, _ = inputs
    result = recognizer(folder / "utt_16000_1ch.wav", "오늘 정말 기분이 좋아")
    assert result["routed"] is True and result["task"] in ("kemdy19", "kemdy20")
    assert sum(result["routing"].values()) == pytest.approx(1, abs=1e-5)
    forced = recognizer(folder / "utt_16000_1ch.wav", "오늘 정말 기분이 좋아", task="kemdy20")
    assert forced["task"] == "kemdy20" and forced["routed"] is False
    with pytest.raises(InputError, match="unknown task"):
        recognizer(folder / "utt_16000_1ch.wav", "text", task="kemdy21")


@pytest.mark.parametrize("serving", ["int8", "bf16"])
def test_int8_and_bf16_serving_stay_close_to_fp32(pushed, inputs, serving):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    folder, _ = inputs
    exact = EmotionRecognizer.from_pretrained(pushed, precision="fp32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other = EmotionRecognizer.from_pretrained(pushed, int8=serving == "int8",
                                                  precision="bf16" if serving == "bf16" else "fp32")
    assert not [w for w in caught if "quantized tensor" in str(w.message)]  # torch's deprecation goes to the log
    assert any(isinstance(module, DynamicLinear) for module in other.model.modules()) == (serving == "int8")
    assert not any(isinstance(module, DynamicLinear) for module in exact.model.modules())
    classifier = other.model.heads[other.tasks[0]].classifier
    if serving == "bf16":  # served in bf16: the linear weights are stored in bf16
        assert other.precision == "bf16" and classifier.weight.dtype == torch.bfloat16
    else:
        assert other.precision == "fp32"
        with pytest.raises(ValueError, match="int8 serving runs in fp32"):
            EmotionRecognizer.from_pretrained(pushed, int8=True, precision="bf16")
    for name in ("utt_16000_1ch", "utt_44100_2ch"):
        a = exact(folder / f"{name}.wav", "오늘 정말 기분이 좋아")["probabilities"]
        b = other(folder / f"{name}.wav", "오늘 정말 기분이 좋아")["probabilities"]
        assert a != b  # really another computation
        assert max(abs(a[label] - b[label]) for label in a) < 0.05


def test_transformers_pipeline_serves_a_task_folder(pushed, inputs):
    """`pipeline("multimodal-emotion-recognition", model=<task folder>)` gives the recognizer's probabilities as
    label/score pairs, highest first."""
    from transformers import AutoConfig, pipeline

    import kemdy_adapters.pipelines  # noqa: F401 - registers the pipeline

    folder, _ = inputs
    config = AutoConfig.from_pretrained(pushed)
    assert (config.model_type, config.task) == ("kemdy-task", "kemdy19")
    classifier = pipeline("multimodal-emotion-recognition", model=str(pushed), model_kwargs={"precision": "fp32"})
    recognizer = EmotionRecognizer.from_pretrained(pushed, precision="fp32")
    wav = folder / "utt_16000_1ch.wav"
    expected = recognizer(wav, "오늘 정말 기분이 좋아")["probabilities"]
    result = classifier(str(wav), text="오늘 정말 기분이 좋아")
    assert [item["label"] for item in result] == sorted(expected, key=lambda label: -expected[label])
    assert all(abs(item["score"] - expected[item["label"]]) < 1e-5 for item in result)
    top = classifier({"audio": str(wav), "text": "오늘 정말 기분이 좋아"}, top_k=2)
    assert top == result[:2]
    audio, rate = sf.read(wav, dtype="float32")
    (best,) = classifier(audio, sampling_rate=rate, text="오늘 정말 기분이 좋아", top_k=1)
    assert best["label"] == result[0]["label"]
