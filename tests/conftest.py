"""Shared fixtures: one generated sample corpus per test session, and an offline, isolated Hugging Face setup."""

from __future__ import annotations

import os

# Set before any Hugging Face import: nothing here may reach a hub, and loading scripts are trusted local code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_TRUST_REMOTE_CODE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
