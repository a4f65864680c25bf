"""`kemdy-adapters demo`: the whole protocol on the built-in sample corpus, at demo scale, in a few minutes.

1. writes the generated sample corpus (KEMDy19/KEMDy20 layout) into `<output>/sample_corpus`;
2. pretrains tiny text and speech encoders on other generated utterances (`pretrain.py`) into
   `<output>/encoders`, saved and then loaded with `from_pretrained(path)` like real checkpoints;
3. runs `benchmark` on all seven strategies, both task orders and `folds` of the 5 session folds, with the
   floors of every test set and one tuning rule for every strategy (`DEMO_GRID`: two trials each, chosen on
   the validation sessions of fold `folds[0]` in the first order);
4. prints the report. Re-running skips everything already done.
The numbers come from generated data and tiny encoders: they show the method's mechanics (learning,
forgetting, isolation), and are not comparable with the published table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .benchmark import Benchmark, parse_benchmark_arguments
from .pretrain import pretrain_demo_encoders
from .sample_corpus import SampleCorpusConfig, write_sample_corpus

NOTE = ("Demo: generated sample corpus and tiny locally pretrained encoders, {folds} of 5 session folds, "
        "{epochs} epochs. These numbers show the mechanics and are NOT comparable with the published table.")

# Demo-scale settings (the reference's are in examples/configs/reference.yaml). The tiny encoders are 64 wide,
# so the adapters' bottleneck is 16 (reduction 4) rather than 64/12. No strategy gets a hand-set learning rate:
# every one is tuned by the same rule over the same grid (tuning.py).
def DEMO_CORPUS(seed: int) -> SampleCorpusConfig:  # noqa: N802 - a config constructor
    """The demo's corpus: the default sample layout with more turns per dialogue (about 480 utterances)."""
    return SampleCorpusConfig(seed=seed, kemdy19_turns=6, kemdy20_turns=12, min_seconds=0.6, max_seconds=1.2)


DEMO_GRID = {"learning_rate": [2e-3, 1e-2], "ewc_lambda": [5e3, 5e4], "lwf_alpha": [0.5, 2.0]}
"""Two trials per strategy: both learning rates, and for ewc and lwf two of their four (lr, weight) points."""


def demo_arguments(output: Path, text: Path, speech: Path, corpus: Path, folds: list[int], epochs: int,
                   seed: int) -> list[str]:
    return [
        "--output_dir", str(output), "--data_dir", str(corpus),
        "--text_model", str(text), "--speech_model", str(speech),
        "--folds", *map(str, folds), "--num_train_epochs", str(epochs),
        "--learning_rate", "2e-3", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--projector_size", "32", "--adapter_reduction_factor", "4", "--max_speech_seconds", "2",
        "--fisher_samples", "200", "--fisher_batch_size", "1",
        "--tuning_grid", json.dumps(DEMO_GRID), "--tuning_orders", "kemdy19,kemdy20", "--seed", str(seed),
        "--dataset_cache_dir", str(output / "hf_cache"), "--disable_tqdm", "true", "--use_cpu", "true",
        "--note", NOTE.format(folds=len(folds), epochs=epochs),
    ]


def run_demo(
    output: str | Path = "runs/demo", folds: tuple[int, ...] = (0, 1), epochs: int = 5, seed: int = 0
) -> dict:
    output = Path(output)
    started = time.time()
    corpus = output / "sample_corpus"
    if (corpus / "manifest.json").exists():
        print(f"[demo] sample corpus: {corpus} (already there)")
    else:
        print(f"[demo] writing the generated sample corpus to {corpus} (not KEMDy data)")
        write_sample_corpus(corpus, DEMO_CORPUS(seed))
    print(f"[demo] pretraining tiny text and speech encoders on other generated utterances -> {output / 'encoders'}")
    text, speech = pretrain_demo_encoders(output / "encoders")
    print(f"[demo] running the benchmark: 7 strategies x {len(folds)} folds x 2 task orders, {epochs} epochs, "
          f"2 tuning trials per strategy (the full protocol has 5 folds and 40 epochs)")
    bench, model_args, data_args, args = parse_benchmark_arguments(
        demo_arguments(output, text, speech, corpus, list(folds), epochs, seed))
    results = Benchmark(bench, model_args, data_args, args).run()
    print()
    print((output / "results.md").read_text(encoding="utf-8"))
    print(f"[demo] finished in {time.time() - started:.0f} s; report: {output / 'results.md'}, "
          f"figures: {output / 'figures'}")
    return results
