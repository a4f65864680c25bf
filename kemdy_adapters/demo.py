"""`kemdy-adapters demo`: the whole protocol on the built-in sample corpus, at demo scale, in a few minutes.

1. writes the generated sample corpus (KEMDy19/KEMDy20 layout) into `<output>/sample_corpus`, or takes a folder
   holding `KEMDy19/` and `KEMDy20_v1_1/` (`corpus=`: the user's copy of the real corpora, or any corpus in
   their layout) and runs the same recipe on it;
2. copies the small pretrained text and speech encoders shipped in the package (`pretrain.py`, made by
   `kemdy-adapters pretrain` without any benchmark data) into `<output>/encoders`, loaded with
   `from_pretrained(path)` like real checkpoints;
3. runs `benchmark` on all seven strategies, both task orders and `folds` of the 5 session folds, with the
   floors of every test set and one tuning rule for every strategy (`DEMO_GRID`: two trials each, chosen on
   the validation sessions of fold `folds[0]` in the first order), every task also learning valence and
   arousal (`DEMO_DIMENSIONS`), scored in CCC beside their floors, with the small-data recipe `DEMO_RECIPE`;
4. prints the report. Re-running skips everything already done.
Cells and tuning trials run side by side, one process per CPU core (`demo_processes`), one thread each, so the
scores do not depend on the core count.
The numbers come from generated data and tiny encoders: they show the method's mechanics (learning,
forgetting, isolation), and are not comparable with the published table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .benchmark import Benchmark, parse_benchmark_arguments
from .pretrain import demo_encoders
from .sample_corpus import SampleCorpusConfig, write_sample_corpus

NOTE = ("Demo: {corpus} and the small encoders shipped with kemdy-adapters, {folds} of 5 session folds, "
        "{epochs} epochs. These numbers show the mechanics and are NOT comparable with the published table.")

# Demo-scale settings (the reference's are in examples/configs/reference.yaml). The tiny encoders are 64 wide,
# so the adapters' bottleneck is 16 (reduction 4) rather than 64/12. No strategy gets a hand-set learning rate:
# every one is tuned by the same rule over the same grid (tuning.py).
def DEMO_CORPUS(seed: int) -> SampleCorpusConfig:  # noqa: N802 - a config constructor
    """The demo's corpus: the default sample layout with more turns per dialogue (about 480 utterances)."""
    return SampleCorpusConfig(seed=seed, kemdy19_turns=6, kemdy20_turns=12, min_seconds=0.6, max_seconds=1.2)


DEMO_EPOCHS = 9
"""Epochs per task: the kept epoch is the best on validation. 5 left `task_a` at about half the linear baseline's
macro F1; 10-15 reached it with the shipped encoders; 9 is the most that fits the 5-minute budget (README,
"Encoders")."""

DEMO_PRECISION = "fp32"
"""Training and scoring precision of the demo (`--precision bf16`: Trainer's bf16 and bf16 scoring). fp32 by
default: at the shipped encoders' 64-wide shapes bf16 autocast measured no faster (README, Speed), and fp32 gives
the same numbers on every CPU."""

DEMO_DIMENSIONS = {"dimension_weight": 0.3, "dimension_loss": "mse"}
"""Valence and arousal beside the categories: 0.3 x MSE (1-5 scale). Measured on the demo corpus, task_a,
finetune and adapter, 2 folds (README, "Valence and arousal"): mean macro F1 over the six task scores 0.529
without, 0.527 with 0.3 x MSE, 0.503 with 1.0 x MSE, 0.454 with 1.0 x (1 - CCC), at about the same CCC."""

DEMO_RECIPE = {"text_pooling": "mean", "selection_metric": "macro_f1", "dropout": 0.3}
"""The small-data recipe (README, "Encoders"): the text vector is the mean over the tokens, the kept epoch the one
with the best validation macro F1 (the tuning rule's criterion and the targets' metric), dropout 0.3 before the
classifier. Measured on corpus seeds 0 and 1, 2 folds x 2 orders: `task_a` macro F1 0.734 / 0.243 and 0.639 /
0.694 with [CLS], micro F1 selection and dropout 0.1 (the reference's), 0.794 / 0.404 and 0.728 / 0.682 with
this recipe."""

DEMO_GRID = {"learning_rate": [2e-3, 1e-2], "ewc_lambda": [5e3, 5e4], "lwf_alpha": [0.5, 2.0]}
"""Two trials per strategy: both learning rates, and for ewc and lwf two of their four (lr, weight) points."""


MAX_DEMO_PROCESSES = 8
"""At most this many cells side by side by default (each worker holds its own torch, models and data: about
0.5 GB)."""


def demo_processes() -> int:
    """The demo's default `--processes`: one cell per CPU core this process may use, at most `MAX_DEMO_PROCESSES`.
    Every cell trains with one thread whatever this is (`demo_arguments`), so it changes the time, not the scores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_DEMO_PROCESSES))


def demo_arguments(output: Path, text: Path, speech: Path, corpus: Path, folds: list[int], epochs: int,
                   seed: int, described: str = "generated sample corpus", precision: str = DEMO_PRECISION,
                   processes: int = 1) -> list[str]:
    """The benchmark's arguments for the demo. Every cell trains with one torch thread (`--cell_threads 1`): at
    the shipped encoders' shapes a second thread made a cell slower, not faster (workers.py), and with one thread
    the scores do not depend on how many cells run side by side or on the machine's core count."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"the demo runs in fp32 or bf16, got {precision!r}")
    return [
        "--bf16", str(precision == "bf16").lower(), "--inference_precision", precision,
        "--output_dir", str(output), "--data_dir", str(corpus),
        "--text_model", str(text), "--speech_model", str(speech),
        "--folds", *map(str, folds), "--num_train_epochs", str(epochs),
        "--learning_rate", "2e-3", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--projector_size", "32", "--adapter_reduction_factor", "4", "--max_speech_seconds", "2",
        "--fisher_samples", "200", "--fisher_batch_size", "1",
        *(item for key, value in {**DEMO_DIMENSIONS, **DEMO_RECIPE}.items() for item in (f"--{key}", str(value))),
        "--tuning_grid", json.dumps(DEMO_GRID), "--tuning_orders", "kemdy19,kemdy20", "--seed", str(seed),
        "--dataset_cache_dir", str(output / "hf_cache"), "--disable_tqdm", "true", "--use_cpu", "true",
        "--note", NOTE.format(corpus=described, folds=len(folds), epochs=epochs),
        "--cell_processes", str(processes), "--cell_threads", "1",
    ]



def run_demo(
    output: str | Path = "runs/demo", folds: tuple[int, ...] = (0, 1), epochs: int = DEMO_EPOCHS, seed: int = 0,
    corpus: str | Path | None = None, precision: str = DEMO_PRECISION, processes: int | None = None,
) -> dict:
    """Runs the demo (module docstring) and returns the benchmark's results.

    Args:
        output: The demo's folder; what is already there is reused.
        folds: Session folds to run, of 5.
        epochs: Epochs per task.
        seed: Seed of the generated corpus and of training.
        corpus: A folder holding `KEMDy19/` and `KEMDy20_v1_1/` to use instead of the generated sample corpus.
        precision: `fp32`, or `bf16` (training with Trainer's `--bf16`, scoring and routing under bf16 autocast).
        processes: Cells trained side by side, one process each (`benchmark --cell_processes`, workers.py);
            None: one per CPU core (`demo_processes`). The scores are the same for any value.
    """
    output = Path(output)
    processes = demo_processes() if processes is None else processes
    started = time.time()
    if corpus is not None:
        corpus = Path(corpus)
        missing = [name for name in ("KEMDy19", "KEMDy20_v1_1") if not (corpus / name).is_dir()]
        if missing:
            raise ValueError(f"{corpus}: no {' or '.join(missing)} folder in it (the demo needs both corpora)")
        described = f"the corpora in {corpus}"
        print(f"[demo] corpora: {corpus / 'KEMDy19'} and {corpus / 'KEMDy20_v1_1'}")
    else:
        corpus = output / "sample_corpus"
        described = "generated sample corpus"
        if (corpus / "manifest.json").exists():
            print(f"[demo] sample corpus: {corpus} (already there)")
        else:
            print(f"[demo] writing the generated sample corpus to {corpus} (not KEMDy data)")
            write_sample_corpus(corpus, DEMO_CORPUS(seed))
    text, speech = demo_encoders(output / "encoders")
    print(f"[demo] encoders: the small pretrained pair shipped with kemdy-adapters -> {output / 'encoders'}")
    side = f", {processes} cells side by side" if processes > 1 else ""
    print(f"[demo] running the benchmark: 7 strategies x {len(folds)} folds x 2 task orders, {epochs} epochs, "
          f"2 tuning trials per strategy, {precision}{side} (the full protocol has 5 folds and 40 epochs)")
    bench, model_args, data_args, args = parse_benchmark_arguments(
        demo_arguments(output, text, speech, corpus, list(folds), epochs, seed, described, precision, processes))
    results = Benchmark(bench, model_args, data_args, args).run()
    print()
    print((output / "results.md").read_text(encoding="utf-8"))
    print(f"[demo] finished in {time.time() - started:.0f} s; report: {output / 'results.md'}, "
          f"figures: {output / 'figures'}")
    return results
