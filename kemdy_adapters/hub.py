"""Sharing task adapters through the Hugging Face Hub: find a task's export in a run, prepare the folder to upload
(weights, config, routing statistics, model card), upload it, and resolve a task from a repo id or a folder.

What is uploaded is exactly the prepared folder: `task_config.json`, `model.safetensors`, `routing.safetensors`
(when the run wrote it) and `README.md`. Nothing else from a run folder (no dataset, cache, log, checkpoint or
pickle) is ever copied. Repositories are created private unless `private=False` is asked for.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .corpus import CORPORA
from .export import PIPELINE_CONFIG, TASK_CONFIG, TASK_WEIGHTS, TaskExportError, read_task_config, verify_task
from .layout import BenchmarkLayout, RunLayout
from .routing import ROUTING_FILE
from .storage import read_json

logger = logging.getLogger(__name__)

TASK_FILES = (TASK_CONFIG, TASK_WEIGHTS, ROUTING_FILE, PIPELINE_CONFIG)
CARD = "README.md"
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_WARNING = ("KEMDy data (audio, transcripts, annotations) must never be uploaded: only the task's adapters, "
                "head, config and aggregate routing statistics are.")


@dataclass
class TaskSource:
    """Where a task's export lives in a run, and the scores the run measured for it."""

    export_dir: Path
    task: str
    scores: dict | None
    """metric -> {"mean", "std", "n"} on the task's own test sessions (n folds), or None if unknown."""
    protocol: str
    agnostic: dict | None = None


def find_task(source, task: str, strategy: str = "adapter", fold: int = 0) -> TaskSource:
    """Locates task `task` in `source`: an export folder, a `train` run folder, or a `benchmark` folder.

    In a benchmark folder the adapters come from `runs/<strategy>/fold<fold>/` in the order that learns `task`
    first, and the scores are the benchmark's for that task (mean and spread over the folds run).
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder (expected a run, benchmark or task export folder)")
    if (source / TASK_CONFIG).is_file():
        config = read_task_config(source)
        if config["task"] != task:
            raise ValueError(f"{source} holds task {config['task']!r}, not {task!r}")
        return TaskSource(source, task, None, "Scores unknown: exported without its run folder.")
    run_layout = RunLayout(source)
    if (run_layout.export(task) / TASK_CONFIG).is_file():
        row = read_json(run_layout.scores(task))
        run = read_json(run_layout.run_json, {})
        own = (row or {}).get("scores", {}).get(task)
        scores = {metric: {"mean": own[metric], "std": 0.0, "n": 1} for metric in CARD_METRICS
                  if own.get(metric) is not None} if own else None
        protocol = (f"One run: strategy `{run.get('strategy', '?')}`, session fold {run.get('fold', '?')}, task "
                    f"order {' -> '.join(run.get('order', []))}; scores on that fold's held-out test sessions.")
        if run.get("received"):
            protocol += (" The run continued from tasks received without their data: "
                         + ", ".join(f"`{item['task']}` ({item['source']})" for item in run["received"]) + ".")
        results = read_json(run_layout.results, {})
        return TaskSource(run_layout.export(task), task, scores, protocol, results.get("task_agnostic"))
    layout = BenchmarkLayout(source)
    results = read_json(layout.results)
    if results is None or "strategies" not in results:
        raise FileNotFoundError(f"{source}: neither a task export ({TASK_CONFIG}), nor a run folder with "
                                f"{task}/export/, nor a benchmark folder with results.json")
    if task not in results["tasks"]:
        raise ValueError(f"{source}: the benchmark has tasks {results['tasks']}, not {task!r}")
    order = next((key for key in results["orders"] if key.split(">")[0] == task), None)
    data = results["strategies"].get(strategy)
    if data is None or order is None or order not in data["final"]:
        raise FileNotFoundError(f"{source}: no finished {strategy!r} cell learns {task!r} first "
                                f"(strategies: {sorted(results['strategies'])})")
    export = layout.cell(strategy, fold, order.split(">")).export(task)
    if not (export / TASK_CONFIG).is_file():
        raise FileNotFoundError(f"{export}: no export of {task!r} for fold {fold} ({strategy}); pick a fold the "
                                "benchmark ran with --fold")
    scores = {metric: data["final"][order][task][metric] for metric in CARD_METRICS
              if data["final"][order][task].get(metric)}
    folds = sorted({cell["fold"] for cell in data["folds"]})
    training = results["config"]["training"]
    protocol = (f"Session-wise cross-validation as in the reference protocol (sessions split into 5 folds; each "
                f"fold's test sessions unseen in training, two training sessions held out for model selection). "
                f"Strategy `{strategy}`, task order {order.replace('>', ' -> ')}, "
                f"{training.get('num_train_epochs')} epochs; scores are mean ± standard deviation over folds "
                f"{folds}. These weights are fold {fold}'s.")
    if results.get("note"):
        protocol += f"\n\n> {results['note']}"
    return TaskSource(export, task, scores, protocol, data.get("task_agnostic"))


def _shape_text(shapes: dict) -> str:
    return (f"{shapes['model_type']}, {shapes['num_hidden_layers']} layers, hidden {shapes['hidden_size']}, "
            f"{shapes['num_attention_heads']} heads")


def _looks_like_hub_id(checkpoint: str | None) -> bool:
    return bool(checkpoint) and bool(REPO_ID_RE.match(checkpoint)) and not Path(checkpoint).exists()


KEMDY_DATA_NOTE = ("The data itself is **never** in this repository and must never be uploaded anywhere: ETRI's "
                   "licence allows research use and forbids redistribution.")
GENERIC_DATA_NOTE = ("The data itself is **not** in this repository: the conversations stay with the institution "
                     "that trained the task.")
KEMDY_LIMITATIONS = (
    "{balance} Weighted F1 rewards the majority class; read macro F1 and UAR beside it.",
    "Acted or scripted Korean conversations recorded in one setting: scores on other speakers, microphones, "
    "languages or spontaneous speech will be lower. Not a clinical or hiring tool.",
    "Emotion labels are the raters' majority vote; segments where raters tied are excluded from training.",
    "The weights were trained on KEMDy data: check ETRI's licence terms before using them outside research.",
)
METHOD_CITATION = """\
N. Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019 (the adapters); W. Lee,
github.com/WoongheeLee/continual_erc_etri (per-task adapters for continual multimodal emotion recognition).
Cite the corpus as its owner asks."""
GENERIC_LIMITATIONS = (
    "Scores hold for the held-out speakers or sessions of the corpus it was trained on; other speakers, "
    "microphones, languages or settings will score lower. Weighted F1 rewards the majority class; read macro F1 "
    "and UAR beside it. Not a clinical or hiring tool on its own.",
    "The weights were trained on data whose terms only its owner knows: ask before using them elsewhere.",
)


CARD_METRICS = {
    # metric: (the Hub's metric type, its name, its `average` argument, the card table's label)
    "weighted_f1": ("f1", "weighted F1", "weighted", "weighted F1"),
    "macro_f1": ("f1", "macro F1", "macro", "macro F1"),
    "uar": ("recall", "UAR (unweighted average recall)", "macro", "UAR"),
    "valence_ccc": ("ccc", "valence CCC (concordance correlation, 1-5 scale)", None, "valence CCC"),
    "arousal_ccc": ("ccc", "arousal CCC (concordance correlation, 1-5 scale)", None, "arousal CCC"),
}
"""The scores a model card lists (the CCC rows only for a task with valence/arousal outputs)."""


def card_data(config: dict, source: TaskSource, repo_id: str):
    """The model card's metadata as `huggingface_hub.ModelCardData` (tags, base models, datasets, and the
    scores as `EvalResult`s, which the Hub shows as the model-index)."""
    from huggingface_hub import EvalResult, ModelCardData

    base = config["base"]
    kemdy = config["task"] in CORPORA
    bases = [checkpoint for checkpoint in (base["text_checkpoint"], base["speech_checkpoint"])
             if _looks_like_hub_id(checkpoint)]
    scores = source.scores or {}
    results = [
        EvalResult(task_type="audio-classification", task_name="Emotion recognition in conversation",
                   dataset_type=config["task"], dataset_name=config["task"].upper(),
                   dataset_split="held-out sessions (session-wise cross-validation)", metric_type=kind,
                   metric_name=name, metric_value=round(float(scores[metric]["mean"]), 4),
                   metric_args={"average": average} if average else None)
        for metric, (kind, name, average, _) in CARD_METRICS.items() if scores.get(metric)]
    return ModelCardData(
        library_name="kemdy-adapters",
        language=["ko"] if kemdy else None,
        license="other",
        license_name="kemdy-derived" if kemdy else "data-owner-terms",
        license_link="https://nanum.etri.re.kr/share/kjnoh/KEMDy20?lang=En_us" if kemdy else None,
        pipeline_tag="audio-classification",
        tags=["adapter-transformers", "adapters", "kemdy-adapters", "emotion-recognition", "multimodal", "speech",
              "continual-learning", config["task"]],
        datasets=[config["task"]] if kemdy else None,
        base_model=bases or None,
        metrics=sorted({result.metric_type for result in results}) or None,
        model_name=repo_id.split("/")[-1] if results else None,
        eval_results=results or None,
    )


def render_model_card(config: dict, source: TaskSource, repo_id: str, parameters: int, size: int) -> str:
    """README.md of a task repository: `huggingface_hub.ModelCard.from_template` over `hub_cards/model_card.md`
    (a Jinja template) with `card_data`'s metadata."""
    from huggingface_hub import ModelCard

    from .cards import DATASET_CARD_VALUES, HUB_CARDS, KEMDY_CITATION, check_template_values
    from .report import format_score

    corpus = DATASET_CARD_VALUES.get(config["task"], {})
    kemdy = config["task"] in CORPORA
    balance = "Label distribution: " + corpus.get("balance_note", "see the dataset card.")
    limitations = "\n".join(f"- {line}" for line in (KEMDY_LIMITATIONS if kemdy else GENERIC_LIMITATIONS)
                            ).replace("{balance}", balance)
    base = config["base"]
    if config["adapter_method"] == "lora":
        adapters = f"LoRA (r={config['lora_r']}, alpha={config['lora_alpha']})"
    else:
        adapters = ("Houlsby bottleneck adapters (two per layer, reduction factor "
                    f"{config['adapter_reduction_factor']})")
    scores = source.scores or {}
    table = "\n".join(
        f"| {label} | {format_score(scores.get(metric), 'not measured', folds=True)} |"
        for metric, (*_, label) in CARD_METRICS.items()
        if metric in ("weighted_f1", "macro_f1", "uar") or scores.get(metric))
    local = [c for c in (base["text_checkpoint"], base["speech_checkpoint"]) if not _looks_like_hub_id(c)]
    checkpoint_note = (f"Checkpoints given as local paths ({', '.join(map(str, local))}) or missing were not on the "
                       "Hub when this task was trained: load the task with `text_model=` / `speech_model=` set to the "
                       "same checkpoints.") if local else ""
    agnostic = ""
    if source.agnostic:
        accuracy = source.agnostic["routing_accuracy"]
        method = source.agnostic["method"]
        value = accuracy[method]["mean"] if isinstance(accuracy[method], dict) else accuracy[method]
        agnostic = (f"Without the task id, the task is chosen by routing statistics (`{method}`); routing accuracy "
                    f"between the tasks of this run: {value:.3f}.")
    values = {
        "title": f"{corpus.get('pretty_name', config['task'])} emotion task adapter ({repo_id})",
        "pretty_name": corpus.get("pretty_name", config["task"]),
        "adapter_description": adapters,
        "adapter_method": config["adapter_method"],
        "num_labels": len(config["labels"]),
        "parameters": f"{parameters:,}",
        "size": f"{size / 1e6:.2f} MB",
        "labels": ", ".join(config["labels"]),
        "text_checkpoint": base["text_checkpoint"],
        "speech_checkpoint": base["speech_checkpoint"],
        "text_shape": _shape_text(base["text"]),
        "speech_shape": _shape_text(base["speech"]),
        "checkpoint_note": checkpoint_note,
        "repo_id": repo_id,
        "corpus_summary": corpus.get("summary", (
            f"Trained on `{config['task']}`, a corpus in the generic task layout (audio with a metadata file) that "
            f"kemdy-adapters does not know; {len(config['labels'])} labels. Ask its owner what it holds.")),
        "data_note": KEMDY_DATA_NOTE if kemdy else GENERIC_DATA_NOTE,
        "limitations": limitations,
        "modality_note": ("This task was learned **without transcripts**: its head ignores any text passed with "
                          "the audio." if config.get("modalities", ["speech", "text"]) == ["speech"] else ""),
        "protocol": source.protocol,
        "scores_table": table,
        "agnostic": agnostic,
        "citation": KEMDY_CITATION if kemdy else METHOD_CITATION,
    }
    template = (HUB_CARDS / "model_card.md").read_text(encoding="utf-8")
    check_template_values(template, values, known={"card_data"})
    return str(ModelCard.from_template(card_data(config, source, repo_id), template_str=template, **values))


def prepare_task_folder(source, task: str, output, repo_id: str, strategy: str = "adapter", fold: int = 0,
                        overwrite: bool = False) -> list[Path]:
    """Writes the folder that `push` uploads into `output`; returns its files."""
    found = find_task(source, task, strategy=strategy, fold=fold)
    config = verify_task(found.export_dir)  # never prepare a damaged or modified export for upload
    if not config["adapters"]:
        raise ValueError(f"{found.export_dir}: task {task!r} has no adapters; only adapter strategies are shared")
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} exists and is not empty (pass --overwrite to replace it)")
    # Written under a temporary name and renamed when complete: a full disk or a kill leaves no half folder.
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in TASK_FILES:
            if (found.export_dir / name).is_file():
                shutil.copyfile(found.export_dir / name, staging / name)
        verify_task(staging)  # the copies are what was verified
        from safetensors.torch import load_file

        parameters = sum(tensor.numel() for tensor in load_file(staging / TASK_WEIGHTS).values())
        size = sum(path.stat().st_size for path in staging.iterdir())
        (staging / CARD).write_text(render_model_card(config, found, repo_id, parameters, size), encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(output.iterdir())


def push_task(folder, repo_id: str, private: bool = True, token: str | None = None,
              commit_message: str | None = None) -> str:
    """Uploads a prepared task folder (only its task files and card) to `repo_id`; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / TASK_CONFIG).is_file() or not (folder / CARD).is_file():
        raise FileNotFoundError(f"{folder}: not a prepared task folder (run push with --to-dir first)")
    config = read_task_config(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model",
        allow_patterns=[*TASK_FILES, CARD],
        commit_message=commit_message or f"Upload task adapter {config['task']} (kemdy-adapters)",
    )
    return str(getattr(info, "commit_url", info))


def resolve_task(location, revision: str | None = None, cache_dir=None, token: str | None = None) -> Path:
    """A local task folder as is, or a Hub repo id resolved through the Hugging Face cache (downloading when
    online; with HF_HUB_OFFLINE=1 only the cache is read). Only the task files and the card are fetched."""
    path = Path(location)
    if path.is_dir():
        return path
    if not REPO_ID_RE.match(str(location)):
        raise TaskExportError(f"{location}: no such folder, and not a Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = snapshot_download(str(location), revision=revision, cache_dir=cache_dir, token=token,
                                   allow_patterns=[*TASK_FILES, CARD])
    except LocalEntryNotFoundError as error:
        raise TaskExportError(f"{location}: not a local folder and not in the Hugging Face cache, and the Hub "
                              f"cannot be reached ({error})") from error
    except (RepositoryNotFoundError, HfHubHTTPError) as error:
        raise TaskExportError(f"{location}: the Hub refused the repository ({error})") from error
    return Path(folder)


def add_to_cache(folder, repo_id: str, cache_dir, commit: str | None = None) -> Path:
    """Places a prepared task folder in a Hugging Face cache as `repo_id` (`models--owner--name/refs/main` ->
    `snapshots/<commit>/`), as a download would leave it; returns the snapshot folder. For machines without Hub
    access (tests, the walk-through in examples/): `resolve_task(repo_id, cache_dir=...)` then finds it offline."""
    import hashlib

    if not REPO_ID_RE.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repo id (owner/name)")
    folder = Path(folder)
    if commit is None:  # a stand-in revision: the digest of the files, so the same folder gets the same one
        digest = hashlib.sha1()
        for path in sorted(folder.iterdir()):
            digest.update(path.name.encode() + path.read_bytes())
        commit = digest.hexdigest()
    storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return snapshot


def describe_folder(files: list[Path]) -> str:
    size = sum(path.stat().st_size for path in files)
    lines = [f"  {path.name:<22} {path.stat().st_size / 1e6:8.3f} MB" for path in files]
    return "\n".join(lines + [f"  {'total':<22} {size / 1e6:8.3f} MB"])


def card_yaml(card_text: str) -> dict:
    """The YAML metadata block of a card (for checks)."""
    import yaml

    match = re.match(r"^---\n(.*?)\n---\n", card_text, re.S)
    if not match:
        raise ValueError("card has no YAML metadata block")
    return yaml.safe_load(match.group(1))

