"""Shared fixtures: one generated sample corpus per test session, and an offline, isolated Hugging Face setup."""

from __future__ import annotations

import os

# Set before any Hugging Face import: nothing here may reach a hub, and loading scripts are trusted local code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_TRUST_REMOTE_CODE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one test process per core (run.py test): one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory):
    """The default sample corpus (seed 0), written once; tests must not modify it (copy it first)."""
    from kemdy_adapters.sample_corpus import write_sample_corpus

    return write_sample_corpus(tmp_path_factory.mktemp("sample") / "corpus")


@pytest.fixture(scope="session")
def manifest(sample_corpus):
    from kemdy_adapters.sample_corpus import load_manifest

    return load_manifest(sample_corpus)


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf_cache"))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, manifest):
    """A tiny BERT (vocabulary from the sample transcripts) and a tiny Wav2Vec2, saved with save_pretrained."""
    from kemdy_adapters.tiny import save_tiny_encoders

    texts = [segment["text"] for segment in manifest["segments"]]
    text, speech = save_tiny_encoders(tmp_path_factory.mktemp("encoders"), texts)
    return str(text), str(speech)


def continual_arguments(tiny_checkpoints, sample_corpus, output_dir, *extra: str):
    """Parsed arguments for a short continual run on the sample corpus with tiny encoders."""
    from kemdy_adapters.training_args import parse_arguments

    text, speech = tiny_checkpoints
    return parse_arguments([
        "--text_model", text, "--speech_model", speech, "--data_dir", str(sample_corpus),
        "--output_dir", str(output_dir), "--num_train_epochs", "2", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "8", "--projector_size", "16", "--max_speech_seconds", "2",
        "--fisher_samples", "24", "--fisher_batch_size", "4", "--disable_tqdm", "true", "--seed", "3", *extra,
    ])


@pytest.fixture(scope="session")
def prepared_data(tiny_checkpoints, sample_corpus, hf_cache):
    """Fold 0 of both sample corpora, tokenised and prepared once for every continual test."""
    from kemdy_adapters.data import MultimodalProcessor, load_task_splits

    processor = MultimodalProcessor.from_checkpoints(*tiny_checkpoints, max_speech_seconds=2)
    return {task: load_task_splits(task, sample_corpus, 0, processor, cache_dir=hf_cache)
            for task in ("kemdy19", "kemdy20")}


@pytest.fixture(scope="session")
def clinic_corpus(tmp_path_factory):
    """A third corpus in the generic layout (metadata.csv, 4 labels, a fifth untranscribed), written once."""
    from kemdy_adapters.sample_corpus import write_generic_corpus

    return write_generic_corpus(tmp_path_factory.mktemp("clinic") / "clinic", utterances=10)


@pytest.fixture(scope="session")
def prepared_clinic(tiny_checkpoints, clinic_corpus, hf_cache):
    """Fold 0 of the generic corpus as the task `clinic`, prepared once."""
    from kemdy_adapters.data import MultimodalProcessor, load_task_splits
    from kemdy_adapters.tasks import TaskSpec

    processor = MultimodalProcessor.from_checkpoints(*tiny_checkpoints, max_speech_seconds=2)
    return load_task_splits(TaskSpec.from_folder("clinic", clinic_corpus), None, 0, processor, cache_dir=hf_cache)
