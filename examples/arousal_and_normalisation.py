"""How much arousal per-utterance waveform normalisation hides: prints JSON lines (figures, not a test).

The neural models see each waveform normalised to zero mean and unit variance (as Wav2Vec2's feature extractor
with `do_normalize` does), which erases the utterance's loudness. This fits the eGeMAPS functionals + ridge
regression of arousal (the dimensional floor's audio half, alpha chosen on validation by CCC) on the raw
waveforms and on the same waveforms normalised (rescaled to a 0.1 standard deviation), and prints the test CCC
per corpus averaged over `--folds`, on the generated demo corpus (or `--corpus DIR`, a folder holding
`KEMDy19/` and `KEMDy20_v1_1/`).

    python examples/arousal_and_normalisation.py [--folds 0 1] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import datasets
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from kemdy_adapters.baselines import ALPHA_GRID
from kemdy_adapters.demo import DEMO_CORPUS
from kemdy_adapters.hf_dataset import decode_audio, load_kemdy
from kemdy_adapters.metrics import concordance
from kemdy_adapters.sample_corpus import write_sample_corpus
from kemdy_adapters.tasks import task_splits

CROP = 32000  # the demo's 2 s crop


def functionals(split, normalise: bool) -> np.ndarray:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    rows = []
    for audio in split["audio"]:
        signal = np.asarray(decode_audio(audio)["array"], dtype=np.float32)[:CROP]
        if normalise:
            signal = (signal - signal.mean()) / np.sqrt(signal.var() + 1e-7) * 0.1
        rows.append(np.nan_to_num(smile.process_signal(signal, 16000).to_numpy()[0]))
    return np.stack(rows)


def arousal_ccc(splits, normalise: bool) -> float:
    x = {name: functionals(split, normalise) for name, split in splits.items()}
    y = {name: np.asarray(split["arousal"], dtype=np.float64) for name, split in splits.items()}
    scaler = StandardScaler().fit(x["train"])
    x = {name: scaler.transform(values) for name, values in x.items()}
    best = max(ALPHA_GRID, key=lambda alpha: concordance(
        Ridge(alpha=alpha).fit(x["train"], y["train"]).predict(x["validation"]), y["validation"]))
    predicted = np.clip(Ridge(alpha=best).fit(x["train"], y["train"]).predict(x["test"]), 1.0, 5.0)
    return concordance(predicted, y["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--corpus", help="a folder holding KEMDy19/ and KEMDy20_v1_1/ (default: the demo corpus)")
    options = parser.parse_args()
    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="arousal-"))
    corpus = options.corpus or write_sample_corpus(work / "corpus", DEMO_CORPUS(0))
    for name in ("kemdy19", "kemdy20"):
        dataset = load_kemdy(name, corpus, cache_dir=str(work / "cache"))
        scores = {kind: [] for kind in ("raw", "normalised")}
        for fold in options.folds:
            splits = task_splits(dataset, fold)
            for kind in scores:
                scores[kind].append(arousal_ccc(splits, normalise=kind == "normalised"))
        means = {f"arousal_ccc_{kind}": round(float(np.mean(values)), 3) for kind, values in scores.items()}
        print(json.dumps({"corpus": name, "folds": options.folds, **means}))


if __name__ == "__main__":
    main()
