"""Dataset cards are rendered from hub_cards/ templates and the committed ones are in sync."""

from __future__ import annotations

import pytest
import yaml

from kemdy_adapters.cards import HUB_CARDS, render_dataset_card


def test_dataset_cards_in_sync_with_the_template():
    for corpus in ("kemdy19", "kemdy20"):
        committed = (HUB_CARDS.parent / "dataset_scripts" / corpus / "README.md").read_text(encoding="utf-8")
        assert committed == render_dataset_card(corpus), (
            f"dataset_scripts/{corpus}/README.md is stale: run `python -m kemdy_adapters.cards`")


def test_dataset_card_metadata_and_content():
    for corpus, name in (("kemdy19", "KEMDy19"), ("kemdy20", "KEMDy20")):
        card = render_dataset_card(corpus)
        _, header, body = card.split("---\n", 2)
        metadata = yaml.safe_load(header)
        assert metadata["pretty_name"] == name and metadata["license"] == "other"
        assert metadata["language"] == ["ko"]
        assert "may not be redistributed" in body and "ETRI" in body
        assert f'load_dataset(\n    "dataset_scripts/{corpus}"' in body
        assert "$" not in body.replace("$ ", "")


def test_a_card_template_variable_without_a_value_is_an_error():
    from kemdy_adapters.cards import check_template_values

    check_template_values("# {{ title }}\n{{ card_data }}", {"title": "x"}, known={"card_data"})
    with pytest.raises(KeyError, match="labels"):
        check_template_values("# {{ title }} {{ labels }}", {"title": "x"})
