"""EWC: the penalty is 0 at its anchor and grows away from it; the Fisher is non-negative."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from kemdy_adapters.data import MultimodalCollator
from kemdy_adapters.ewc import EWCPenalty, EWCState, consolidate, estimate_fisher
from kemdy_adapters.modeling import MultimodalEmotionModel


def test_penalty_zero_at_anchor_and_growing(tiny_checkpoints, prepared_data):
    model = MultimodalEmotionModel.from_encoders(*tiny_checkpoints, projector_size=16)
    model.add_task("shared", adapters=False)
    model.train_task("shared", full=True)
    collator = MultimodalCollator(AutoTokenizer.from_pretrained(tiny_checkpoints[0]))
    train = prepared_data["kemdy19"]["train"]
    fisher, seen = estimate_fisher(model, train, collator, max_samples=12, batch_size=4, seed=5)
    assert len(set(seen)) == 12 and set(seen) <= set(train["id"]) and seen != train["id"][:12]
    assert estimate_fisher(model, train, collator, max_samples=12, batch_size=4, seed=5)[1] == seen  # seeded
    assert all((value >= 0).all() for value in fisher.values())
    assert sum(value.sum() for value in fisher.values()) > 0
    assert set(fisher) == {name for name, p in model.named_parameters() if p.requires_grad}

    state = consolidate(model, fisher, "kemdy19", seen)
    penalty = EWCPenalty(state, ewc_lambda=5000.0)
    assert penalty(model).item() == 0.0
    values = []
    direction = {name: torch.randn_like(p) for name, p in model.named_parameters() if name in fisher}
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    for scale in (1e-3, 1e-2, 1e-1):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in direction:
                    p.copy_(original[name] + scale * direction[name])
        values.append(penalty(model).item())
    assert 0 < values[0] < values[1] < values[2]
    # Quadratic in the distance: 10x farther, 100x the penalty.
    assert abs(values[2] / values[1] - 100) < 1e-2 * 100


def test_online_accumulation_and_round_trip(tmp_path):
    model = torch.nn.Linear(2, 1)
    first = consolidate(model, {"weight": torch.ones(1, 2), "bias": torch.ones(1)}, "a", ["x"])
    second = consolidate(model, {"weight": torch.full((1, 2), 2.0), "bias": torch.zeros(1)}, "b", ["y"],
                         previous=first, gamma=0.5)
    assert torch.equal(second.fisher["weight"], torch.full((1, 2), 2.5))
    assert second.tasks == ["a", "b"] and second.samples == {"a": ["x"], "b": ["y"]}
    second.save(tmp_path)
    loaded = EWCState.load(tmp_path)
    assert loaded.tasks == second.tasks and torch.equal(loaded.fisher["bias"], second.fisher["bias"])
    assert torch.equal(loaded.anchor["weight"], model.weight.detach())
