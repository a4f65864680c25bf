"""Tasks as data: generic corpus folders, Python datasets, name=path tasks, label sets, speech-only tasks."""

from __future__ import annotations

import csv
import json
import shutil

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
from test_modeling import batch, tiny_model

from kemdy_adapters.corpus import CorpusFormatError
from kemdy_adapters.data import MultimodalCollator, MultimodalProcessor, load_task_splits
from kemdy_adapters.hf_dataset import SCRIPTS_SUPPORTED, decode_audio
from kemdy_adapters.strategies import STRATEGIES, Strategy, get_strategy, register_strategy
from kemdy_adapters.tasks import TaskSpec, split_task_items, task_splits
from kemdy_adapters.training_args import parse_arguments


def rows_of(folder):
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def write_rows(folder, rows, fieldnames=None):
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def clinic_copy(clinic_corpus, tmp_path):
    return shutil.copytree(clinic_corpus, tmp_path / "clinic")


def test_generic_folder_is_a_task(clinic_corpus):
    spec = TaskSpec.from_folder("clinic", clinic_corpus)
    assert spec.labels == ("calm", "tense", "cheerful", "low")  # labels.txt gives the set and its order
    assert spec.modalities == ("speech", "text") and spec.source == "folder"
    dataset = spec.load()
    rows = rows_of(clinic_corpus)
    assert len(dataset) == len(rows) == 100
    assert dataset.features["label"].names == list(spec.labels)
    assert [spec.labels[label] for label in dataset["label"]] == [row["label"] for row in rows]
    untranscribed = sum(1 for text in dataset["text"] if not text)
    assert untranscribed == sum(1 for row in rows if not row["text"]) and 10 <= untranscribed <= 35
    assert sorted(set(dataset["session"])) == [f"spk{i:02d}" for i in range(1, 11)]
    audio = decode_audio(dataset[0]["audio"])
    assert audio["sampling_rate"] == 16000 and len(audio["array"]) > 8000
    splits = task_splits(dataset, 0)
    sessions = {name: set(split["session"]) for name, split in splits.items()}
    assert len(sessions["test"]) == 2 and len(sessions["validation"]) == 2 and len(sessions["train"]) == 6
    assert not (sessions["train"] & sessions["test"]) and not (sessions["validation"] & sessions["test"])


def test_generic_folder_without_labels_file_sorts_labels_and_reads_jsonl(clinic_copy):
    rows = rows_of(clinic_copy)
    (clinic_copy / "labels.txt").unlink()
    (clinic_copy / "metadata.csv").unlink()
    with open(clinic_copy / "metadata.jsonl", "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps({"file_name": row["file_name"], "label": row["label"], "speaker": row["speaker"],
                                     **({"text": row["text"]} if row["text"] else {})}, ensure_ascii=False) + "\n")
    spec = TaskSpec.from_folder("clinic", clinic_copy)
    assert spec.labels == ("calm", "cheerful", "low", "tense")  # sorted: the documented default order
    assert len(spec.load()) == len(rows)


def test_split_column_gives_the_split_for_every_fold(clinic_copy):
    rows = rows_of(clinic_copy)
    for i, row in enumerate(rows):
        row["split"] = ("train", "train", "train", "validation", "test")[i % 5]
        del row["speaker"]
    write_rows(clinic_copy, rows)
    dataset = TaskSpec.from_folder("clinic", clinic_copy).load()
    for fold in (0, 3):
        splits = task_splits(dataset, fold)
        assert [len(splits[name]) for name in ("train", "validation", "test")] == [60, 20, 20]


@pytest.mark.parametrize("case, message", [
    ("no_label_column", r"metadata.csv: column 'label' is missing"),
    ("no_group", r"needs a session or speaker column"),
    ("missing_audio", r"metadata.csv line 4: audio file audio/nowhere.wav not found"),
    ("unreadable_audio", r"metadata.csv line 3: audio file .* is unreadable"),
    ("unknown_label", r"metadata.csv line 5: label 'furious' is not in the label set"),
    ("empty", r"metadata.csv: no rows"),
    ("empty_label", r"metadata.csv line 2: empty label"),
    ("both_files", r"both metadata.csv and metadata.jsonl"),
])
def test_generic_folder_errors_name_the_file_and_row(clinic_copy, case, message):
    rows = rows_of(clinic_copy)
    fields = list(rows[0])
    if case == "no_label_column":
        fields.remove("label")
        rows = [{k: v for k, v in row.items() if k != "label"} for row in rows]
    elif case == "no_group":
        fields.remove("speaker")
        rows = [{k: v for k, v in row.items() if k != "speaker"} for row in rows]
    elif case == "missing_audio":
        rows[2]["file_name"] = "audio/nowhere.wav"
    elif case == "unreadable_audio":
        (clinic_copy / rows[1]["file_name"]).write_bytes(b"RIFF\x00\x00\x00\x00WAVEbroken")
    elif case == "unknown_label":
        rows[3]["label"] = "furious"
    elif case == "empty":
        rows = []
    elif case == "empty_label":
        rows[0]["label"] = ""
    elif case == "both_files":
        (clinic_copy / "metadata.jsonl").write_text("{}\n")
    write_rows(clinic_copy, rows, fields)
    with pytest.raises(CorpusFormatError, match=message):
        TaskSpec.from_folder("clinic", clinic_copy)


def test_a_python_dataset_is_a_task_source(tiny_checkpoints):
    rng = np.random.default_rng(0)
    rows = {"audio": [{"array": rng.normal(0, 0.1, 8000 + 400 * i).astype(np.float32), "sampling_rate": 16000}
                      for i in range(20)],
            "label": ["yes", "no"] * 10, "speaker": [f"s{i % 5}" for i in range(20)],
            "text": ["네 좋아요" if i % 4 else "" for i in range(20)]}
    dataset = datasets.Dataset.from_dict(rows)
    if SCRIPTS_SUPPORTED:  # datasets 3.x encodes Audio with soundfile; 4+ needs torchcodec, so arrays stay as given
        dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=16000))
    spec = TaskSpec.from_dataset("survey", dataset)
    assert spec.labels == ("no", "yes") and spec.modalities == ("speech", "text")
    processor = MultimodalProcessor.from_checkpoints(*tiny_checkpoints, max_speech_seconds=2)
    splits = load_task_splits(spec, None, 1, processor)
    assert sum(len(split) for split in splits.values()) == 20
    present = np.concatenate([np.asarray(split["text_present"]) for split in splits.values()])
    assert present.sum() == 15  # the empty transcripts are flagged, not dropped
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"):
        TaskSpec.from_dataset("survey", dataset.remove_columns("label"))


def test_tasks_named_with_paths_on_the_command_line(clinic_corpus, tmp_path):
    assert split_task_items(["kemdy19", "clinic=/data/clinic"]) == (["kemdy19", "clinic"], {"clinic": "/data/clinic"})
    with pytest.raises(ValueError, match="must be lower-case"):
        split_task_items(["Clinic=/x"])
    model_args, data_args, args = parse_arguments(
        ["--tasks", "kemdy19", f"clinic={clinic_corpus}", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path)])
    assert args.tasks == ["kemdy19", "clinic"] and args.task_locations == {"clinic": str(clinic_corpus)}
    spec = data_args.task_spec("clinic", args.task_locations)
    assert spec.labels == ("calm", "tense", "cheerful", "low")
    config = tmp_path / "run.yaml"
    config.write_text(f"tasks: [clinic]\ncorpora: ['clinic={clinic_corpus}']\noutput_dir: {tmp_path}\n")
    _, data_args, args = parse_arguments([str(config)])
    assert data_args.task_spec("clinic", args.task_locations).location == str(clinic_corpus.resolve())
    with pytest.raises(ValueError, match="only the adapter strategies"):
        parse_arguments(["--strategy", "finetune", "--from_tasks", "some/repo"])


def test_speech_only_task_ignores_any_text():
    model = tiny_model(tasks=())
    model.add_task("calls", ["a", "b", "c"], modalities=("speech",))
    model.add_task("mixed", ["a", "b", "c"])
    inputs = {key: value for key, value in batch(0).items() if key != "labels"}
    other = {**inputs, "input_ids": torch.flip(inputs["input_ids"], dims=[0]) % 30 + 5}
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs, task="calls").logits, model(**other, task="calls").logits)
        assert not torch.equal(model(**inputs, task="mixed").logits, model(**other, task="mixed").logits)
        # A mixed task ignores the text of the utterances flagged as untranscribed, and only theirs.
        present = torch.tensor([1.0, 0.0, 1.0])
        a = model(**inputs, task="mixed", text_present=present).logits
        b = model(**other, task="mixed", text_present=present).logits
        assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])
    assert model.config.tasks["calls"]["modalities"] == ["speech"]


def test_collator_carries_the_transcript_flag(tiny_checkpoints):
    processor = MultimodalProcessor.from_checkpoints(*tiny_checkpoints, max_speech_seconds=1)
    wave = {"array": np.sin(np.arange(8000) / 9).astype(np.float32)}
    rows = processor({"text": ["화가 나", "", "  "], "audio": [wave] * 3, "label": [0, 1, 2]})
    assert rows["text_present"] == [1.0, 0.0, 0.0]
    features = [{key: rows[key][i] for key in rows if key != "length"} for i in range(3)]
    collated = MultimodalCollator(processor.tokenizer)(features)
    assert collated["text_present"].tolist() == [1.0, 0.0, 0.0]


def test_strategy_records_are_data():
    assert list(STRATEGIES) == ["task_a", "finetune", "ewc", "lwf", "adapter", "adapter_wo_pretrain", "joint"]
    assert get_strategy("joint").joint and get_strategy("lwf").distills and not get_strategy("joint").carries_model
    adapter, finetune, ewc = get_strategy("adapter"), get_strategy("finetune"), get_strategy("ewc")
    assert adapter.adapters and adapter.receives and not finetune.adapters and ewc.consolidates
    assert "ewc/ewc.safetensors" in ewc.needs and adapter.needs == ("export/model.safetensors",)
    assert not get_strategy("adapter_wo_pretrain").pretrained and not get_strategy("task_a").carries_model
    same, different = [("a", "b")] * 2, [("a", "b"), ("x", "y", "z")]
    assert finetune.heads_shared(same) and not finetune.heads_shared(different)
    assert finetune.scenario(same).startswith("domain-incremental")
    assert finetune.scenario(different).startswith("task-incremental")
    assert adapter.scenario(same).startswith("task-incremental")
    with pytest.raises(ValueError, match="registered already"):
        register_strategy(Strategy("adapter", "again", trains="adapters"))
    with pytest.raises(ValueError, match="trains must be"):
        Strategy("odd", "?", trains="half")
    with pytest.raises(ValueError, match="unknown strategy 'replay'"):
        get_strategy("replay")


def test_sample_corpus_command_writes_the_generic_corpus(tmp_path, capsys):
    from kemdy_adapters.cli import main

    assert main(["sample-corpus", "--output", str(tmp_path / "c"), "--sessions", "5", "--clinic"]) == 0
    out = capsys.readouterr().out
    assert "clinic (generic layout" in out and (tmp_path / "c" / "clinic" / "metadata.csv").is_file()
    info = sf.info(str(tmp_path / "c" / "clinic" / rows_of(tmp_path / "c" / "clinic")[0]["file_name"]))
    assert info.samplerate == 16000 and info.channels == 1
