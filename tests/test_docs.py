"""The public surface: `__all__` is what the README documents, and the docstring examples run."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import kemdy_adapters

README = Path(__file__).resolve().parent.parent / "README.md"


def test_all_is_what_the_readme_documents():
    paragraph = README.read_text(encoding="utf-8").split("`kemdy_adapters` exports:", 1)[1].split("(imported", 1)[0]
    assert re.findall(r"`(\w+)`", paragraph) == kemdy_adapters.__all__
    for name in kemdy_adapters.__all__:
        assert getattr(kemdy_adapters, name).__name__ == name


@pytest.mark.parametrize("name", ["MultimodalEmotionModel", "EmotionRecognizer", "load_kemdy", "ContinualRun"])
def test_docstring_example_runs(name):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = finder.find(getattr(kemdy_adapters, name), name)
    assert examples and examples[0].examples, f"{name} has no >>> example"
    for example in examples:
        runner.run(example)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed (output above)"
