"""Valence and arousal beside the categories: the metrics on hand-computed inputs, the regression outputs in a
task's head (isolated like everything a task owns), and the data that carries them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_modeling import batch, tiny_model

from kemdy_adapters.metrics import concordance, dimension_scores
from kemdy_adapters.modeling import ccc_loss


def test_ccc_pearson_rmse_on_hand_computed_inputs():
    reference = np.array([1.0, 2.0, 3.0])
    assert concordance(reference, reference) == pytest.approx(1.0)
    # shifted by one: cov = var = 2/3, so CCC = (4/3) / (4/3 + 1) = 4/7; r = 1; RMSE = 1
    scores = dimension_scores(np.stack([reference + 1, reference], 1), np.stack([reference, reference], 1))
    assert scores["valence_ccc"] == pytest.approx(4 / 7)
    assert scores["valence_pearson"] == pytest.approx(1.0) and scores["valence_rmse"] == pytest.approx(1.0)
    assert scores["arousal_ccc"] == pytest.approx(1.0) and scores["arousal_rmse"] == 0.0
    # halved around the mean: cov = 1/3, var_p = 1/6, var_r = 2/3 -> CCC = (2/3) / (5/6) = 0.8
    assert concordance(2 + (reference - 2) / 2, reference) == pytest.approx(0.8)
    constant = dimension_scores(np.full((3, 2), 2.0), np.stack([reference, reference], 1))
    assert constant["valence_ccc"] == 0.0 and constant["valence_pearson"] == 0.0
    assert constant["valence_rmse"] == pytest.approx(np.sqrt(2 / 3))
    assert concordance(-reference, reference) == pytest.approx(-2 * (2 / 3) / (4 / 3 + 16))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        dimension_scores(np.zeros((3, 1)), np.zeros((3, 1)))


def test_ccc_loss_is_one_minus_the_concordance():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.rand(16, 2, generator=generator) * 4 + 1
    targets = torch.rand(16, 2, generator=generator) * 4 + 1
    expected = 1 - np.mean([concordance(predictions[:, k].numpy(), targets[:, k].numpy()) for k in range(2)])
    assert ccc_loss(predictions, targets).item() == pytest.approx(expected, abs=1e-6)


def dimensional_batch(seed: int):
    inputs = batch(seed)
    generator = torch.Generator().manual_seed(seed + 100)
    inputs["dimension_targets"] = 1 + 4 * torch.rand(len(inputs["labels"]), 2, generator=generator)
    return inputs


def outputs(model, inputs, task):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in inputs.items() if k not in ("labels", "dimension_targets")}, task=task)


def train(model, task, steps=3, seed=1):
    model.train_task(task)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(steps):
        model(**dimensional_batch(seed + step), task=task).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.mark.parametrize("loss", ["mse", "ccc"])
def test_regression_outputs_live_in_the_head_and_add_to_the_loss(loss):
    model = tiny_model(tasks=())
    model.config.dimension_loss = loss
    model.add_task("kemdy19", dimensions=("valence", "arousal"))
    model.add_task("plain")
    assert model.task_dimensions("kemdy19") == ["valence", "arousal"] and model.task_dimensions("plain") == []
    assert any(key.startswith("heads.kemdy19.regressor.") for key in model.task_parameter_names("kemdy19"))
    inputs = dimensional_batch(0)
    out = outputs(model, inputs, "kemdy19")
    assert out.dimensions.shape == (3, 2)
    torch.testing.assert_close(out.dimensions, torch.full((3, 2), 3.0), atol=0.1, rtol=0)  # near the middle
    plain = outputs(model, inputs, "plain")
    assert plain.dimensions is None and len(plain.to_tuple()) == 1  # a task without dimensions: logits only
    model.eval()
    with torch.no_grad():
        with_targets = model(**inputs, task="kemdy19").loss
        without = model(**{k: v for k, v in inputs.items() if k != "dimension_targets"}, task="kemdy19").loss
        model.config.dimension_weight = 2.0
        doubled = model(**inputs, task="kemdy19").loss
    assert with_targets > without
    assert (doubled - without).item() == pytest.approx(2 * (with_targets - without).item(), rel=1e-5)
    train(model, "kemdy19", loss == "ccc" and 6 or 3)
    trained = outputs(model, inputs, "kemdy19").dimensions
    assert not torch.allclose(trained, torch.full((3, 2), 3.0)) and bool(((trained > 1) & (trained < 5)).all())


def test_earlier_tasks_valence_arousal_bit_identical_after_a_later_task(tiny_checkpoints, tmp_path):
    from kemdy_adapters.modeling import MultimodalEmotionModel

    text, speech = tiny_checkpoints
    model = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    model.add_task("kemdy19", dimensions=("valence", "arousal"))
    train(model, "kemdy19")
    probe = dimensional_batch(42)
    reference = outputs(model, probe, "kemdy19")
    model.add_task("kemdy20", dimensions=("valence", "arousal"))
    train(model, "kemdy20", steps=4, seed=7)
    after = outputs(model, probe, "kemdy19")
    assert torch.equal(after.dimensions, reference.dimensions) and torch.equal(after.logits, reference.logits)
    assert not torch.equal(outputs(model, probe, "kemdy20").dimensions, reference.dimensions)
    # The export carries them: a fresh model predicts the same valence and arousal.
    model.save_task(tmp_path / "kemdy19", "kemdy19")
    fresh = MultimodalEmotionModel.from_encoders(str(text), str(speech), projector_size=16)
    fresh.load_task(tmp_path / "kemdy19")
    assert fresh.task_dimensions("kemdy19") == ["valence", "arousal"]
    assert torch.equal(outputs(fresh, probe, "kemdy19").dimensions, reference.dimensions)


@pytest.fixture(scope="module")
def dimensional_bench(tiny_checkpoints, sample_corpus, hf_cache, tmp_path_factory):
    from kemdy_adapters.benchmark import Benchmark, parse_benchmark_arguments

    text, speech = tiny_checkpoints
    output = tmp_path_factory.mktemp("dimensional")
    arguments = parse_benchmark_arguments([
        "--output_dir", str(output), "--data_dir", str(sample_corpus), "--text_model", text, "--speech_model",
        speech, "--strategies", "finetune", "adapter", "--folds", "0", "--num_train_epochs", "2", "--learning_rate",
        "5e-3", "--projector_size", "16", "--max_speech_seconds", "2", "--dataset_cache_dir", hf_cache,
        "--disable_tqdm", "true", "--dimension_weight", "1.0", "--report_to", "tensorboard"])
    return output, Benchmark(*arguments).run()


def test_benchmark_scores_valence_and_arousal_in_the_score_matrix(dimensional_bench):
    import json

    from kemdy_adapters.metrics import DIMENSION_METRICS, METRICS

    output, results = dimensional_bench
    for name, strategy in results["strategies"].items():
        for cell in strategy["folds"]:
            assert set(cell["matrix"]) == set(METRICS) | set(DIMENSION_METRICS)
            ccc = cell["matrix"]["valence_ccc"]
            assert ccc[0][0] is not None and ccc[1][0] is not None and ccc[1][1] is not None
            if name == "adapter":  # each task's own adapters and head: nothing to forget, in CCC too
                assert ccc[1][0] == ccc[0][0]
        assert strategy["forgetting"]["arousal_ccc"]["n"] == 2
        assert {"valence_ccc", "arousal_rmse"} <= set(strategy["final"]["kemdy19>kemdy20"]["kemdy19"])
    cell = output / "runs" / "adapter" / "fold0" / "kemdy19-kemdy20"
    run = json.loads((cell / "results.json").read_text())
    assert run["dimensions"] == {"kemdy19": ["valence", "arousal"], "kemdy20": ["valence", "arousal"]}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracked = EventAccumulator(str(cell / "logs")).Reload().Scalars("R/valence_ccc/kemdy19")
    assert [point.step for point in tracked] == [0, 1]  # R's valence CCC after each task, in the tracker too
    assert tracked[1].value == pytest.approx(run["matrix"]["valence_ccc"][1][0])
    floors = json.loads((output / "floors" / "fold0.json").read_text())
    for task in ("kemdy19", "kemdy20"):
        mean, linear = floors[task]["dimensions"]["training_mean"], floors[task]["dimensions"]["linear"]
        assert mean["valence_ccc"] == 0.0 and mean["arousal_pearson"] == 0.0
        assert linear["arousal_ccc"] > 0.3  # the generated arousal follows the voice: handcrafted features see it
        assert results["floors"][task]["dimensions"]["linear"]["valence_ccc"]["mean"] == linear["valence_ccc"]
    report = (output / "results.md").read_text()
    assert "## Valence and arousal" in report and "*training mean*" in report
    assert (output / "figures" / "dimensions.png").read_bytes()[:4] == b"\x89PNG"


def test_card_lists_ccc_and_predict_returns_valence_and_arousal(dimensional_bench, sample_corpus, tmp_path):
    from huggingface_hub import ModelCard

    from kemdy_adapters.cli import main
    from kemdy_adapters.hub import card_yaml
    from kemdy_adapters.inference import EmotionRecognizer

    output, results = dimensional_bench
    folder = tmp_path / "push"
    assert main(["push", "--task", "kemdy19", "--from", str(output), "--repo-id", "lab/kemdy19-va", "--to-dir",
                 str(folder), "--dry-run"]) == 0
    card = (folder / "README.md").read_text()
    final = results["strategies"]["adapter"]["final"]["kemdy19>kemdy20"]["kemdy19"]
    metrics = {m["name"]: m["value"] for m in card_yaml(card)["model-index"][0]["results"][0]["metrics"]}
    assert metrics["valence CCC (concordance correlation, 1-5 scale)"] == round(final["valence_ccc"]["mean"], 4)
    assert metrics["arousal CCC (concordance correlation, 1-5 scale)"] == round(final["arousal_ccc"]["mean"], 4)
    assert "ccc" in {result.metric_type for result in ModelCard(card).data.eval_results}
    assert "| valence CCC |" in card and "| arousal CCC |" in card

    recognizer = EmotionRecognizer.from_pretrained(folder, precision="fp32")
    wav = next((sample_corpus / "KEMDy20_v1_1" / "wav").rglob("*.wav"))
    prediction = recognizer(wav, text="오늘 정말 기분이 좋아요")
    assert set(prediction) >= {"emotion", "probabilities", "valence", "arousal"}
    assert 1 <= prediction["valence"] <= 5 and 1 <= prediction["arousal"] <= 5
    batch, _ = recognizer._inputs(wav, "오늘 정말 기분이 좋아요", None, str(wav))
    with torch.no_grad():
        expected = recognizer.model(**batch, task="kemdy19").dimensions[0]
    assert prediction["valence"] == pytest.approx(float(expected[0]), abs=1e-4)


def test_generated_valence_follows_the_words_and_arousal_the_voice(sample_corpus, manifest, hf_cache):
    from kemdy_adapters.hf_dataset import load_kemdy
    from kemdy_adapters.sample_corpus import VALENCE_AROUSAL, _Writer, perceived_arousal

    for corpus in ("kemdy19", "kemdy20"):
        segments = {segment["id"]: segment for segment in manifest["segments"] if segment["corpus"] == corpus}
        dataset = load_kemdy(corpus, sample_corpus, cache_dir=hf_cache).remove_columns("audio")
        voice, words, arousal, valence = [], [], [], []
        for row in dataset:
            segment = segments[row["id"]]
            voiced = segment["emotion"] if segment["modality"] in ("both", "speech") else "neutral"
            worded = segment["modality"] in ("both", "text") and segment["emotion"] != "neutral"
            voice.append(perceived_arousal(_Writer.prosody(corpus, voiced)))
            words.append(VALENCE_AROUSAL[segment["emotion"]][0] if worded else 3.0)
            arousal.append(row["arousal"])
            valence.append(row["valence"])
        # the raters' mean follows what the utterance carries, not its label: a text-only angry line sounds calm
        assert np.corrcoef(voice, arousal)[0, 1] > 0.8
        assert np.corrcoef(words, valence)[0, 1] > 0.8
        assert 1 <= min(arousal) and max(valence) <= 5


def test_a_generic_corpus_with_valence_and_arousal_columns(clinic_corpus, tmp_path, tiny_checkpoints):
    import shutil

    from test_tasks import rows_of, write_rows

    from kemdy_adapters.corpus import CorpusFormatError
    from kemdy_adapters.data import MultimodalProcessor, load_task_splits
    from kemdy_adapters.tasks import TaskSpec

    folder = shutil.copytree(clinic_corpus, tmp_path / "clinic")
    rows = rows_of(folder)

    def write(rows):
        write_rows(folder, rows)

    assert TaskSpec.from_folder("clinic", folder).dimensions == ()  # no columns: no dimensions
    for i, row in enumerate(rows):
        row["valence"], row["arousal"] = f"{1 + i % 5}", f"{5 - (i % 4) * 0.5}"
    write(rows)
    spec = TaskSpec.from_folder("clinic", folder)
    assert spec.dimensions == ("valence", "arousal")
    processor = MultimodalProcessor.from_checkpoints(*tiny_checkpoints, max_speech_seconds=1)
    splits = load_task_splits(spec, None, 0, processor)
    targets = np.concatenate([np.asarray(split["dimension_targets"]) for split in splits.values()])
    expected = sorted((1 + i % 5, 5 - (i % 4) * 0.5) for i in range(len(rows)))
    assert sorted(map(tuple, targets.tolist())) == expected

    rows[6]["arousal"] = "loud"
    write(rows)
    with pytest.raises(CorpusFormatError, match=r"metadata.csv line 8: arousal 'loud' is not a number from 1 to 5"):
        TaskSpec.from_folder("clinic", folder)
    for row in rows:
        del row["arousal"]
    write(rows)
    with pytest.raises(CorpusFormatError, match=r"has column\(s\) \['valence'\] but not \['arousal'\]"):
        TaskSpec.from_folder("clinic", folder)


def test_joint_training_beside_a_task_without_valence_and_arousal(tiny_checkpoints, sample_corpus, prepared_data,
                                                                tmp_path):
    from conftest import continual_arguments

    from kemdy_adapters.continual import ContinualRun

    # kemdy20's inputs without their targets stand for a corpus that has no valence/arousal
    data = {"kemdy19": prepared_data["kemdy19"],
            "kemdy20": {name: split.remove_columns("dimension_targets")
                        for name, split in prepared_data["kemdy20"].items()}}
    model_args, data_args, args = continual_arguments(tiny_checkpoints, sample_corpus, tmp_path, "--strategy", "joint",
                                                      "--tasks", "kemdy19", "kemdy20", "--dimension_weight", "1.0",
                                                      "--num_train_epochs", "1")
    results = ContinualRun(model_args, data_args, args, data=data).run()
    assert results["dimensions"] == {"kemdy19": ["valence", "arousal"], "kemdy20": []}
    assert "valence_ccc" in results["matrix"]  # kemdy19 could be scored, though the shared head has none
    assert results["matrix"]["valence_ccc"][0] == [None, None]  # no dimensions every task has: none learned
    assert results["matrix"]["macro_f1"][0][0] is not None
