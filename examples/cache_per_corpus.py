"""What one cache per corpus saves over one per fold split: prints JSON lines (figures, not a test).

For the generated sample corpus (or `--corpus DIR`) and `--folds` session folds, times the inputs a benchmark
needs before any training: tokenisation + waveform preparation + the frozen speech part's cache for every split
of every fold, done

- per split (how kemdy-adapters did it before: `task_splits`, then `prepare` and `with_speech_features` on each
  split of each fold), and
- per corpus (now: `prepare_task` and `with_speech_features` once per corpus, each fold selecting its rows),

each in a fresh `datasets` cache, with the shipped text encoder and a speech encoder of `--shape` (`base`: the
Wav2Vec2-base config with random weights; `shipped`: the small one the demo uses). Also reports the cache's
size per hour of audio (the Arrow files of the speech cache over the corpus's cropped audio).

    python examples/cache_per_corpus.py [--folds 5] [--shape base]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets

from kemdy_adapters.data import MultimodalProcessor, prepare, prepare_task
from kemdy_adapters.features import with_speech_features
from kemdy_adapters.modeling import MultimodalEmotionModel
from kemdy_adapters.precision import hardware
from kemdy_adapters.pretrain import SHIPPED_ENCODERS
from kemdy_adapters.sample_corpus import write_sample_corpus
from kemdy_adapters.speed import save_shaped_encoders
from kemdy_adapters.tasks import resolve_task, task_rows, task_splits

TASKS = ("kemdy19", "kemdy20")


def cache_bytes(dataset: datasets.Dataset) -> int:
    return sum(Path(item["filename"]).stat().st_size for item in dataset.cache_files)


def per_split(specs, processor, model, folds: int, cache: str) -> float:
    started = time.perf_counter()
    for fold in range(folds):
        for spec in specs:
            for split in task_splits(spec.load(cache_dir=cache), fold, n_folds=folds).values():
                with_speech_features(prepare(split, processor), model)
    return time.perf_counter() - started


def per_corpus(specs, processor, model, folds: int, cache: str) -> tuple[float, int, float]:
    started = time.perf_counter()
    size = seconds = 0.0
    for spec in specs:
        corpus = prepare_task(spec, None, processor, cache)
        cached = with_speech_features(corpus, model)
        for fold in range(folds):
            for indices in task_rows(corpus, fold, n_folds=folds).values():
                cached.select(indices)
        size += cache_bytes(cached)
        seconds += sum(corpus["length"]) / processor.sampling_rate
    return time.perf_counter() - started, int(size), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="a folder holding KEMDy19/ and KEMDy20_v1_1/ (default: the sample corpus)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--shape", choices=("base", "shipped"), default="base")
    parser.add_argument("--max-speech-seconds", type=float, default=2.0, help="the demo's crop (default 2 s)")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="cache-per-corpus-"))
    corpus = Path(args.corpus) if args.corpus else write_sample_corpus(work / "corpus")
    speech = SHIPPED_ENCODERS / "speech"
    if args.shape == "base":
        _, speech = save_shaped_encoders(work / "encoders", "base")
    model = MultimodalEmotionModel.from_encoders(SHIPPED_ENCODERS / "text", speech)
    processor = MultimodalProcessor.from_checkpoints(SHIPPED_ENCODERS / "text", speech,
                                                     max_speech_seconds=args.max_speech_seconds)
    specs = [resolve_task(task, corpus) for task in TASKS]
    before = per_split(specs, processor, model, args.folds, str(work / "cache_split"))
    after, size, audio = per_corpus(specs, processor, model, args.folds, str(work / "cache_corpus"))
    print(json.dumps({"check": "cache_per_corpus", **hardware("cpu"), "speech": args.shape, "folds": args.folds,
                      "utterance_crop_s": args.max_speech_seconds, "per_split_s": round(before, 1),
                      "per_corpus_s": round(after, 1), "saving": round(1 - after / before, 3),
                      "cache_mb": round(size / 1e6, 1), "audio_hours": round(audio / 3600, 3),
                      "cache_mb_per_audio_hour": round(size / 1e6 / (audio / 3600), 1)}))


if __name__ == "__main__":
    main()
