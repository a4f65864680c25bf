"""The `kemdy-adapters` command line: parse, call the library, set the exit code."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from .precision import PRECISIONS

logger = logging.getLogger("kemdy_adapters")


def _sample_corpus(args: argparse.Namespace) -> int:
    from .sample_corpus import SampleCorpusConfig, load_manifest, write_sample_corpus

    config = SampleCorpusConfig(seed=args.seed, sessions=args.sessions)
    start = time.time()
    write_sample_corpus(args.output, config, overwrite=args.overwrite)
    if args.clinic:
        from .sample_corpus import write_generic_corpus

        shutil.rmtree(Path(args.output) / "clinic", ignore_errors=True)
        write_generic_corpus(Path(args.output) / "clinic", seed=args.seed)
    manifest = load_manifest(args.output)
    size = sum(path.stat().st_size for path in Path(args.output).rglob("*") if path.is_file())
    print(f"wrote the sample corpus to {args.output} in {time.time() - start:.1f} s ({size / 1e6:.1f} MB)")
    for corpus in ("kemdy19", "kemdy20"):
        segments = [seg for seg in manifest["segments"] if seg["corpus"] == corpus]
        counts = Counter(";".join(seg["labels"]) if len(seg["labels"]) > 1 else seg["labels"][0] for seg in segments)
        single = {name: count for name, count in counts.most_common() if ";" not in name}
        print(f"  {corpus}: {len(segments)} segments, single-label {single}, "
              f"multi-label {sum(c for n, c in counts.items() if ';' in n)}")
    if args.clinic:
        rows = (Path(args.output) / "clinic" / "metadata.csv").read_text(encoding="utf-8").splitlines()[1:]
        print(f"  clinic (generic layout, labels calm/tense/cheerful/low): {len(rows)} utterances, "
              f"{sum(1 for row in rows if ',,' in row)} without a transcript; learn it as clinic={args.output}/clinic")
    print("  generated test/demo data: never a stand-in for results on the real corpora")
    return 0


def _summarise(corpus: str, dataset) -> str:
    names = dataset.features["label"].names
    counts = Counter(names[label] if label >= 0 else "multi-label" for label in dataset["label"])
    sessions = sorted(set(dataset["session"]))
    hours = sum(dataset["duration"]) / 3600
    import numpy as np

    from .metrics import DIMENSIONS

    dimensions = ", ".join(f"{name} {np.mean(dataset[name]):.2f} ± {np.std(dataset[name]):.2f}"
                           for name in DIMENSIONS)
    return (f"{corpus}: {len(dataset)} segments, {len(sessions)} sessions ({sessions[0]}..{sessions[-1]}), "
            f"{hours * 60:.1f} min of audio, labels {dict(counts.most_common())}, {dimensions} (1-5, mean ± sd)")


def _inspect(args: argparse.Namespace) -> int:
    import datasets

    from .hf_dataset import load_kemdy

    # The summary lines are the output; --verbose shows the library's progress bars too.
    (datasets.enable_progress_bars if args.verbose else datasets.disable_progress_bars)()
    for corpus in args.corpus:
        dataset = load_kemdy(corpus, args.data_dir, multi_label=args.multi_label, cache_dir=args.cache_dir)
        print(_summarise(corpus, dataset))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, folds=tuple(args.folds), epochs=args.epochs, seed=args.seed, corpus=args.corpus,
             precision=args.precision, processes=args.processes)
    return 0


def _read_texts(paths: list[str]) -> list[str]:
    texts = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        kept = [line.strip() for line in lines if line.strip()]
        if not kept:
            raise ValueError(f"{path}: no text (expected one sentence per line)")
        texts += kept
    return texts


def _read_audio(folders: list[str]) -> list:
    """Every .wav under `folders` as 16 kHz mono (as `predict` reads audio: a bad file is an error naming it)."""
    from .inference import load_audio

    waveforms = []
    for folder in folders:
        files = sorted(Path(folder).rglob("*.wav"))
        if not files:
            raise ValueError(f"{folder}: no .wav files under it")
        waveforms += [load_audio(path) for path in files]
    return waveforms


def _pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainConfig, pretrain_encoders

    config = PretrainConfig(
        hidden_size=args.hidden_size, layers=args.layers, vocab_size=args.vocab_size, sentences=args.sentences,
        recordings=args.recordings, text_steps=args.text_steps, speech_steps=args.speech_steps, seed=args.seed,
        dropout=args.dropout, saved_dropout=args.saved_dropout)
    if args.tokenizer and not (Path(args.tokenizer) / "vocab.txt").is_file():
        raise ValueError(f"{args.tokenizer}: no tokenizer to reuse there (vocab.txt missing)")
    output = Path(args.output)
    if args.overwrite:
        for part in ("text", "speech"):
            shutil.rmtree(output / part, ignore_errors=True)
    texts = _read_texts(args.text) if args.text else None
    waveforms = _read_audio(args.audio) if args.audio else None
    for part, given, kind in (("text", texts, "sentences"), ("speech", waveforms, "recordings")):
        if (output / part / "config.json").exists():
            print(f"[pretrain] {output / part}: already there, kept (--overwrite replaces it)")
        else:
            source = f"{len(given)} {kind} given" if given is not None else "the built-in generated data"
            steps = config.text_steps if part == "text" else config.speech_steps
            print(f"[pretrain] {part} encoder ({config.layers} layers, hidden {config.hidden_size}): {steps} steps "
                  f"on {source} -> {output / part}")
    started = time.time()
    text, speech = pretrain_encoders(output, config, texts=texts, waveforms=waveforms, tokenizer=args.tokenizer)
    for folder in (text, speech):
        size = sum(path.stat().st_size for path in folder.iterdir())
        print(f"[pretrain] {folder}: {size / 1e6:.2f} MB; load it with from_pretrained('{folder}')")
    print(f"[pretrain] done in {time.time() - started:.0f} s; train with --text_model {text} --speech_model {speech}")
    return 0


def _benchmark(argv: list[str]) -> int:
    """`kemdy-adapters benchmark`: strategies x folds x orders (flags or one YAML/JSON file)."""
    from .benchmark import main

    return main(argv)


def _train(argv: list[str]) -> int:
    """`kemdy-adapters train`: one strategy over one task order and fold (flags or one YAML/JSON file)."""
    from .continual import ContinualRun
    from .training_args import parse_arguments

    model_args, data_args, args = parse_arguments(argv)
    results = ContinualRun(model_args, data_args, args).run()
    if args.should_save:  # the main process
        print(format_matrix(results))
    return 0


def _push(args: argparse.Namespace) -> int:
    """`kemdy-adapters push`: prepare a task's folder (weights, config, routing statistics, card); upload it."""
    from .hub import DATA_WARNING, describe_folder, prepare_task_folder, push_task

    folder = Path(args.to_dir or Path("hub_upload") / args.repo_id.replace("/", "--"))
    files = prepare_task_folder(args.source, args.task, folder, args.repo_id, strategy=args.strategy,
                                fold=args.fold, overwrite=args.overwrite)
    print(f"prepared {folder} for {args.repo_id} (task {args.task}):")
    print(describe_folder(files))
    print(DATA_WARNING)
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    visibility = "public" if args.public else "private"
    print(f"uploading to {args.repo_id} ({visibility} repository) ...", flush=True)
    print(f"uploaded: {push_task(folder, args.repo_id, private=not args.public, token=args.token)}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    """`kemdy-adapters predict`: JSON lines with the emotion, all class probabilities, the task and timing."""
    import json

    from .inference import EmotionRecognizer, items_from

    items = items_from(wav=args.wav, text=args.text, folder=args.folder, manifest=args.manifest)
    stream = None
    if args.output:  # before the model loads: a bad output path fails at once
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        stream = open(args.output, "w", encoding="utf-8")
    started = time.time()
    try:
        recognizer = EmotionRecognizer.from_pretrained(
            args.task, text_model=args.text_model, speech_model=args.speech_model, revision=args.revision,
            cache_dir=args.cache_dir, int8=args.int8, allow_unverified=args.allow_unverified,
            precision=args.precision)
    except BaseException:
        if stream:
            stream.close()
        raise
    print(f"loaded tasks {recognizer.tasks} in {time.time() - started:.1f} s"
          f"{' (routing: ' + recognizer.router.kind + ')' if recognizer.router else ''}", file=sys.stderr)
    stream = stream or sys.stdout
    failed = seconds = 0
    try:
        for record in recognizer.predict_many(items, task=args.use_task):
            stream.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            stream.flush()
            if "error" in record:
                failed += 1
                print(f"error: {record['error']}", file=sys.stderr)
            else:
                seconds += record["seconds"]
    finally:
        if args.output:
            stream.close()
    done = len(items) - failed
    print(f"{done} of {len(items)} utterances classified ({failed} errors)"
          f"{f', {seconds / done * 1000:.0f} ms each' if done else ''}"
          f"{f'; written to {args.output}' if args.output else ''}", file=sys.stderr)
    return 2 if failed else 0


def format_matrix(results: dict) -> str:
    """The score matrices of one run as text: rows = after training task i, columns = scored on task j."""
    order = results["order"]
    lines = [f"{results['strategy']} fold {results['fold']} {' -> '.join(order)}"
             + (f" ({results['scenario']})" if results.get("scenario") else "")]
    for item in results.get("received") or []:
        lines.append(f"  received without data: {item['task']} from {item['source']} (frozen; not scored here)")
    for metric in ("weighted_f1", "macro_f1", "uar"):
        width = max(10, *(len(task) + 2 for task in order))
        lines.append(f"  {metric:<{width + 6}}" + "".join(f"{task:>{width}}" for task in order))
        for task, row in zip(order, results["matrix"][metric]):
            cells = "".join(f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}" for value in row)
            lines.append(f"  after {task:<{width}}" + cells)
        summary = results["summary"][metric]
        lines.append("  " + ", ".join(f"{key} {value:.3f}" for key, value in summary.items() if value is not None))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from .pretraining_data import PretrainConfig

    parser = argparse.ArgumentParser(
        prog="kemdy-adapters",
        description="Continual multimodal emotion recognition on KEMDy19/KEMDy20 with per-task adapters.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample-corpus", help="write the generated sample corpus in the real KEMDy layout")
    sample.add_argument("--output", required=True, help="folder to create (KEMDy19/, KEMDy20_v1_1/, manifest.json)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--sessions", type=int, default=10, help="sessions per corpus (at least 5)")
    sample.add_argument("--overwrite", action="store_true", help="replace a sample corpus written earlier")
    sample.add_argument("--clinic", action="store_true",
                        help="also write clinic/, a third corpus in the generic layout (metadata.csv, 4 labels)")
    sample.set_defaults(func=_sample_corpus)

    inspect = commands.add_parser("inspect", help="load corpora through the loading scripts and summarise them")
    inspect.add_argument("data_dir", help="an unpacked corpus folder, or a folder holding KEMDy19/ and KEMDy20_v1_1/")
    inspect.add_argument("--corpus", nargs="+", choices=["kemdy19", "kemdy20"], default=["kemdy19", "kemdy20"])
    inspect.add_argument("--multi-label", action="store_true", help="keep tied (multi-label) rows")
    inspect.add_argument("--cache-dir", default=None, help="datasets cache folder")
    inspect.set_defaults(func=_inspect)

    commands.add_parser(
        "benchmark", add_help=False,
        help="the whole protocol: strategies x session folds x task orders, with the report (benchmark --help)",
    )
    commands.add_parser(
        "bench", add_help=False,
        help="speed benchmark: training/inference throughput and peak memory, one JSON line per case (bench --help)",
    )
    commands.add_parser(
        "train", add_help=False,
        help="one continual run: a strategy over a task order and fold (flags, or a YAML/JSON file; train --help)",
    )

    push = commands.add_parser(
        "push", help="share a task's adapters on the Hub: prepare the folder and model card, then upload")
    push.add_argument("--task", required=True, help="task (corpus) name, e.g. kemdy20")
    push.add_argument("--from", dest="source", required=True,
                      help="a benchmark folder, a train run folder, or a task export folder")
    push.add_argument("--repo-id", required=True, help="Hub repository, owner/name")
    push.add_argument("--strategy", default="adapter", help="benchmark strategy to take the task from")
    push.add_argument("--fold", type=int, default=0, help="benchmark fold whose adapters are pushed (default 0)")
    push.add_argument("--to-dir", default=None,
                      help="where to prepare the folder (default hub_upload/<owner>--<name>)")
    push.add_argument("--dry-run", action="store_true", help="prepare the folder only; upload nothing")
    push.add_argument("--public", action="store_true", help="create a public repository (default: private)")
    push.add_argument("--overwrite", action="store_true", help="replace a folder prepared earlier")
    push.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    push.set_defaults(func=_push)

    predict = commands.add_parser("predict", help="classify utterances (wav + transcript) with task adapters")
    predict.add_argument("--task", nargs="+", required=True,
                         help="task adapters: Hub repo ids or local task folders (several: routed per utterance)")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="one wav file")
    source.add_argument("--folder", help="every .wav under a folder (transcripts from the .txt beside each)")
    source.add_argument("--manifest", help="CSV with columns audio[,text,id,task], paths relative to it")
    predict.add_argument("--text", default=None,
                         help="transcript of --wav (default: the .txt beside it; without one, speech only)")
    predict.add_argument("--use-task", default=None, help="use this task's adapters for every utterance (no routing)")
    predict.add_argument("--output", default=None, help="JSON lines file (default: standard output)")
    predict.add_argument("--text-model", default=None, help="override the text checkpoint the tasks record")
    predict.add_argument("--speech-model", default=None, help="override the speech checkpoint the tasks record")
    predict.add_argument("--revision", default=None, help="Hub revision of the task repositories")
    predict.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    predict.add_argument("--allow-unverified", action="store_true",
                         help="load task folders without an integrity record (older exports) unchecked")
    predict.add_argument("--int8", action="store_true",
                         help="dynamic int8 quantisation of the linear layers (CPU serving; see README, Speed)")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="auto: bf16 where the CPU/GPU computes it natively, else fp32 (see README, Speed)")
    predict.set_defaults(func=_predict)

    pretrain = commands.add_parser(
        "pretrain", help="pretrain small text and speech encoders offline (no hub needed), saved like hub checkpoints")
    pretrain.add_argument("--output", required=True, help="folder for text/ and speech/")
    pretrain.add_argument("--text", nargs="+", default=None,
                          help="UTF-8 text files, one sentence per line (default: the built-in generated Korean)")
    pretrain.add_argument("--audio", nargs="+", default=None,
                          help="folders of .wav files, any rate (default: the built-in generated voices)")
    defaults = PretrainConfig()
    for name, help_text in (("hidden_size", "encoder width"), ("layers", "transformer layers"),
                            ("vocab_size", "WordPiece vocabulary size (at most)"),
                            ("sentences", "generated sentences when no --text is given"),
                            ("recordings", "generated recordings when no --audio is given"),
                            ("text_steps", "text pretraining steps (batch 32)"),
                            ("speech_steps", "speech pretraining steps (batch 16)"), ("seed", "random seed")):
        value = getattr(defaults, name)
        pretrain.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=value,
                              help=f"{help_text} (default: {value})")
    pretrain.add_argument("--dropout", type=float, default=defaults.dropout,
                          help=f"dropout inside both encoders while pretraining (default: {defaults.dropout})")
    pretrain.add_argument("--saved-dropout", dest="saved_dropout", type=float, default=defaults.saved_dropout,
                          help="dropout written into the saved configs, used when fine-tuning (default: "
                               f"{defaults.saved_dropout})")
    pretrain.add_argument("--tokenizer", default=None,
                          help="reuse the tokenizer in this folder (e.g. an earlier text encoder's) instead of "
                               "training one: the new text encoder keeps its vocabulary")
    pretrain.add_argument("--overwrite", action="store_true", help="replace encoders pretrained earlier")
    pretrain.set_defaults(func=_pretrain)

    demo = commands.add_parser("demo", help="the main job on the built-in sample corpus")
    demo.add_argument("--output", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="session folds to run (default: 0 1)")
    demo.add_argument("--epochs", type=int, default=9, help="epochs per task (default: 9)")
    demo.add_argument("--corpus", default=None,
                      help="a folder holding KEMDy19/ and KEMDy20_v1_1/ (e.g. your copy of the real corpora) to run "
                           "the demo's recipe on instead of the generated sample corpus")
    demo.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                      help="fp32 (default), or bf16: training with Trainer's --bf16 and bf16 scoring (README, Speed)")
    demo.add_argument("--processes", type=int, default=None,
                      help="cells trained side by side, one process each (benchmark --cell_processes; default: one "
                           "per CPU core, at most 8); every cell trains with one thread, so the scores are the same "
                           "for any value")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        from .speed import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] in ("train", "benchmark"):
        # HfArgumentParser owns these flags (and their --help).
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return _reported(argv[0], lambda: (_train if argv[0] == "train" else _benchmark)(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return _reported(args.command, lambda: args.func(args))


def _reported(command: str, call) -> int:
    """Runs a command; a user's error (bad argument, file or corpus) becomes one line and exit status 2, as
    argparse does, and no traceback. Programming errors keep theirs."""
    from .corpus import CorpusFormatError
    from .storage import RunLockedError

    try:
        return call()
    except (CorpusFormatError, RunLockedError, ValueError, OSError) as error:
        print(f"kemdy-adapters {command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
