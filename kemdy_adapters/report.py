"""The benchmark report: `results.md` tables and the PNG figures, from `results.json` data."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np

from .metrics import DIMENSIONS
from .strategies import get_strategy

METRIC_NAMES = {"weighted_f1": "weighted F1", "macro_f1": "macro F1", "uar": "UAR", "accuracy": "accuracy"}
TABLE_METRICS = ("weighted_f1", "macro_f1", "uar")


def format_score(score: dict | None, missing: str = "-", folds: bool = False) -> str:
    """`mean ± std [95 % CI]` of a {"mean", "std", "n", "units", "ci95"} score (std and interval over the units,
    the folds; just the mean for one), optionally with the number of folds."""
    if not score:
        return missing
    units = score.get("units", score.get("n", 1))
    text = f"{score['mean']:.3f} ± {score['std']:.3f}" if units > 1 else f"{score['mean']:.3f}"
    if score.get("ci95"):
        low, high = score["ci95"]
        text += f" [{low:.2f}, {high:.2f}]"
    return f"{text} ({units} fold{'s' if units > 1 else ''})" if folds else text


def format_difference(comparison: dict | None) -> str:
    """`+0.210 [0.15, 0.27], p = 0.063, 10 pairs in 5 folds` of a paired comparison (interval and test over
    the folds)."""
    if not comparison:
        return "-"
    text = f"{comparison['mean_difference']:+.3f}"
    if comparison.get("ci95"):
        text += f" [{comparison['ci95'][0]:+.2f}, {comparison['ci95'][1]:+.2f}]"
    p_value = comparison.get("p_wilcoxon")
    text += f", p = {p_value:.3f}" if p_value is not None else ""
    return f"{text}, {cells_and_folds(comparison, 'pair')}"


def final_score(results: dict, strategy: str, task: str, metric: str, position: int) -> dict | None:
    """Task's score after the whole sequence of the order in which it was learned at `position`: 0 (first,
    then the rest: what it retains) or -1 (last: right after learning it, its plasticity). task_a: alone."""
    key = next((key for key in results["orders"] if key.split(">")[position] == task), None)
    data = results["strategies"].get(strategy)
    if key is None or data is None or key not in data["final"]:
        return None
    return data["final"][key][task][metric]


def retained(results: dict, strategy: str, task: str, metric: str) -> dict | None:
    return final_score(results, strategy, task, metric, 0)


FLOOR_COLUMNS = (("majority", "majority class"), ("linear", "linear baseline"))


def floor_score(results: dict, task: str, kind: str, metric: str) -> dict | None:
    return ((results.get("floors") or {}).get(task, {}).get(kind) or {}).get(metric)


def _score_tables(results: dict, position: int, published: dict | None = None) -> list[str]:
    strategies, lines = list(results["strategies"]), []
    floors = [(kind, name) for kind, name in FLOOR_COLUMNS if results.get("floors")]
    for metric in TABLE_METRICS:
        lines += [f"### {METRIC_NAMES[metric]}", "",
                  "| task | " + " | ".join(strategies + [f"*{name}*" for _, name in floors]) + " |",
                  "|---|" + "---|" * (len(strategies) + len(floors))]
        for task in results["tasks"]:
            row = [format_score(final_score(results, strategy, task, metric, position)) for strategy in strategies]
            row += [format_score(floor_score(results, task, kind, metric)) for kind, _ in floors]
            lines.append(f"| {task.upper()} | " + " | ".join(row) + " |")
        if metric == "weighted_f1" and published:
            for task in results["tasks"]:
                cells = []
                for strategy in strategies:
                    value = published.get(task, {}).get(strategy)
                    if strategy == "joint":  # the reference's "adapter" run was joint training
                        value = published.get(task, {}).get("adapter")
                        cells.append("-" if value is None else f"{value:.3f} (their adapter)")
                    else:
                        cells.append("-" if value is None else f"{value:.3f}")
                lines.append(f"| {task.upper()} (published) | " + " | ".join(cells + ["-"] * len(floors)) + " |")
            lines += ["", f"*Published*: {results['published']['description']}."]
        lines.append("")
    return lines


def relative_table(results: dict, metric: str = "macro_f1") -> list[str]:
    """Each strategy's score of every task learned first (what it keeps after the whole sequence) as a multiple of
    the task's linear baseline and of `task_a`'s score on the same folds: the ratios of the means."""
    references = [("linear", "the linear baseline")] if results.get("floors") else []
    references += [("task_a", "`task_a`")] if "task_a" in results["strategies"] else []
    if not references:
        return []

    def reference(kind: str, task: str) -> dict | None:
        return floor_score(results, task, kind, metric) if kind == "linear" else retained(results, kind, task, metric)

    lines = ["## Against the linear baseline and `task_a`", "",
             f"Each task's {METRIC_NAMES[metric]} learned first (as in What each task retains) and its ratio to "
             + " and to ".join(name for _, name in references) + " on the same folds (the ratio of the means; the "
             "intervals of both are in the tables above).", "",
             "| strategy | " + " | ".join(task.upper() for task in results["tasks"]) + " |",
             "|---|" + "---|" * len(results["tasks"])]
    for strategy in results["strategies"]:
        cells = []
        for task in results["tasks"]:
            score = retained(results, strategy, task, metric)
            ratios = [f"{score['mean'] / base['mean']:.3f}x {name}" for kind, name in references
                      if kind != strategy and score and (base := reference(kind, task)) and base["mean"] > 0]
            cells.append(format_score(score) + (": " + ", ".join(ratios) if ratios else ""))
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return lines + [""]


def floors_table(results: dict) -> list[str]:
    """Every floor of every task's test sets (baselines.py), in the headline metrics."""
    floors = results.get("floors")
    if not floors:
        return []
    kinds = ("majority", "chance", "linear_audio", "linear_text", "linear")
    names = {"majority": "majority class", "chance": "chance", "linear_audio": "eGeMAPS (audio)",
             "linear_text": "TF-IDF (text)", "linear": "linear, fused"}
    lines = ["## Floors", "",
             "What each test set gives without a neural model, on the same folds: always the training majority "
             "class; uniformly random labels; and class-weighted logistic regressions on the 88 eGeMAPS functionals "
             "of the speech (openSMILE), on character 1-3-gram TF-IDF of the transcript, and both late-fused "
             "(`baselines.py`). A neural score at or below these learned nothing more than they do.", ""]
    for metric in TABLE_METRICS:
        lines += [f"### {METRIC_NAMES[metric]} (floors)", "", "| task | " + " | ".join(names[k] for k in kinds) + " |",
                  "|---|" + "---|" * len(kinds)]
        for task in results["tasks"]:
            lines.append(f"| {task.upper()} | " + " | ".join(
                format_score(floor_score(results, task, kind, metric)) for kind in kinds) + " |")
        lines.append("")
    return lines


def dimensional_strategies(results: dict) -> list[str]:
    """The strategies whose cells scored valence and arousal (their tasks learned them)."""
    return [name for name, data in results["strategies"].items()
            if any("valence_ccc" in scores for per_task in data["final"].values() for scores in per_task.values())]


def dimension_floor(results: dict, task: str, kind: str, metric: str) -> dict | None:
    return (((results.get("floors") or {}).get(task, {}).get("dimensions") or {}).get(kind) or {}).get(metric)


def dimensions_section(results: dict) -> list[str]:
    """Valence and arousal: CCC after the sequence with its floors, r and RMSE, and forgetting in CCC."""
    strategies = dimensional_strategies(results)
    if not strategies:
        return []
    model = (results.get("config") or {}).get("model") or {}
    floors = [("training_mean", "training mean"), ("linear", "linear baseline")]
    lines = ["## Valence and arousal", "",
             "Every task with valence and arousal (1-5, the raters' mean) also predicts them from its own head, "
             f"trained with {model.get('dimension_weight', '?')} x {str(model.get('dimension_loss', '?')).upper()} "
             "beside the cross-entropy (`--dimension_weight`, `--dimension_loss`); the kept epoch is still chosen by "
             "the class scores. Scores: the concordance correlation coefficient (CCC), Pearson r and the RMSE on the "
             "1-5 scale, on each fold's test sessions, after the task was learned first and every other task after "
             "it (task_a: alone). Floors: the training mean as a constant prediction (CCC 0) and ridge regression on "
             "the eGeMAPS + TF-IDF features (`baselines.py`).", ""]
    for dimension in DIMENSIONS:
        metric = f"{dimension}_ccc"
        lines += [f"### {dimension} CCC", "",
                  "| task | " + " | ".join(strategies + [f"*{name}*" for _, name in floors]) + " |",
                  "|---|" + "---|" * (len(strategies) + len(floors))]
        for task in results["tasks"]:
            row = [format_score(retained(results, strategy, task, metric)) for strategy in strategies]
            row += [format_score(dimension_floor(results, task, kind, metric)) for kind, _ in floors]
            lines.append(f"| {task.upper()} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["### Pearson r and RMSE (means)", "",
              "| task | strategy | valence r | valence RMSE | arousal r | arousal RMSE |", "|---|---|---|---|---|---|"]
    for task in results["tasks"]:
        sources = [(strategy, partial(retained, results, strategy, task)) for strategy in strategies]
        sources += [(f"*{name}*", partial(dimension_floor, results, task, kind)) for kind, name in floors]
        for label, score in sources:
            values = [score(f"{dimension}_{kind}") for dimension in DIMENSIONS for kind in ("pearson", "rmse")]
            lines.append(f"| {task.upper()} | {label} | " + " | ".join(
                "-" if not v else f"{v['mean']:.3f}" for v in values) + " |")
    lines += ["", "### Forgetting in CCC", "",
              "Score right after learning a task minus its score after the last task (as above, in CCC).", "",
              "| strategy | forgetting valence CCC | forgetting arousal CCC |", "|---|---|---|"]
    for strategy in strategies:
        data = results["strategies"][strategy]["forgetting"]
        cells = [format_score(data.get(f"{dimension}_ccc")) for dimension in DIMENSIONS]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_markdown(results: dict) -> str:
    strategies = list(results["strategies"])
    progress = results["progress"]
    lines = ["# kemdy-adapters benchmark", ""]
    if results.get("note"):
        lines += [f"> {results['note']}", ""]
    lines += [f"Cells finished: {progress['finished']} of {progress['total']}. Every cell is one strategy on one "
              "fold, task order and seed. The cells of one fold share its test sessions, so each fold's cells are "
              "averaged first: scores are means ± sample standard deviation over the folds, with the 95 % "
              "confidence interval of the mean over the folds in brackets (Student's t; none for a single fold). "
              "More task orders or seeds make each fold's score less noisy; only more folds narrow the interval.",
              ""]
    if not strategies:
        return "\n".join(lines + ["No cell has finished yet."]) + "\n"
    lines += scenario_table(results)
    lines += tuning_table(results)
    lines += protocol_section(results)
    lines += ["## What each task retains", "",
              "Cell (task X, strategy S): X's score after S learned X **first** and then every other task of the "
              "order, i.e. what X keeps after the whole sequence (task_a: X trained alone). Test sessions of each "
              "fold.", ""]
    lines += _score_tables(results, 0, results.get("published", {}).get("weighted_f1"))
    lines += ["## Plasticity: each task learned last", "",
              "Cell (task X, strategy S): X's score right after S learned it as the **last** task of the order.", ""]
    lines += _score_tables(results, -1)

    lines += floors_table(results)
    lines += relative_table(results)
    lines += dimensions_section(results)
    lines += ["## Backward transfer and forgetting", "",
              "Averaged over folds and orders (Avalanche's definitions: forgetting = score right after learning a "
              "task minus its score after the last task; BWT = -forgetting). 0 means nothing was forgotten.", "",
              "| strategy | " + " | ".join(f"BWT {METRIC_NAMES[m]}" for m in TABLE_METRICS) + " | "
              + " | ".join(f"forgetting {METRIC_NAMES[m]}" for m in TABLE_METRICS) + " |",
              "|---|" + "---|" * (2 * len(TABLE_METRICS))]
    for strategy in strategies:
        data = results["strategies"][strategy]
        values = [data["bwt"][m] for m in TABLE_METRICS] + [data["forgetting"][m] for m in TABLE_METRICS]
        lines.append(f"| {strategy} | " + " | ".join("-" if not v else f"{v['mean']:+.3f}" for v in values) + " |")
    lines += task_forgetting_table(results)
    lines += ["", "## Cost", "", "| strategy | trainable parameters | shared bytes per task | training time |",
              "|---|---|---|---|"]
    for strategy in strategies:
        data = results["strategies"][strategy]
        lines.append(f"| {strategy} | {data['trainable_parameters']:,} | {data['export_bytes'] / 1e6:.2f} MB | "
                     f"{data['train_seconds']:.0f} s |")
    lines += [""] + comparison_table(results) + findings(results) + agnostic_table(results)
    charts = "forgetting chart, valence/arousal chart" if dimensional_strategies(results) else "forgetting chart"
    lines += [f"Figures: `figures/` (confusion matrices, {charts}, score-matrix heatmaps). "
              "Per-cell details: `runs/<strategy>/fold<k>/<order>/`."]
    return "\n".join(lines) + "\n"


REFERENCE_SETTINGS = {
    # (argument group, field): (the reference's value, how to say it)
    ("training", "lr_scheduler_type"): ("constant", "learning-rate schedule"),
    ("training", "weight_decay"): (0.01, "AdamW weight decay"),
    ("training", "max_grad_norm"): (0.0, "gradient clipping norm (0: none)"),
    ("training", "learning_rate"): (1e-5, "learning rate"),
    ("training", "per_device_train_batch_size"): (8, "batch size"),
    ("training", "num_train_epochs"): (40, "epochs"),
    ("training", "seed"): (12, "seed"),
    ("training", "selection_metric"): ("micro_f1", "epoch-selection metric"),
    ("training", "ewc_lambda"): (5000, "EWC lambda"),
    ("training", "weight_average_decay"): (0.0, "moving average of the weights, validated and kept "
                                                "(`weight_average_decay`: its decay per step; 0: none)"),
    ("model", "adapter_reduction_factor"): (12, "adapter reduction factor (bottleneck 64 at 768)"),
    ("model", "adapter_non_linearity"): ("gelu", "adapter activation"),
    ("model", "adapter_init"): ("reference", "adapter initialisation"),
    ("model", "task_layer_norms"): (True, "task-specific layer norms"),
    ("model", "projector_size"): (256, "speech projector size"),
    ("model", "dropout"): (0.1, "dropout before the classifier"),
    ("model", "text_pooling"): ("cls", "text vector (`text_pooling`; cls: BERT's pooled [CLS])"),
    ("model", "speech_pooling"): ("mean", "speech vector (`speech_pooling`; mean over the frames)"),
    ("model", "modality_dropout"): (0.0, "training utterances losing their text or speech (`modality_dropout`)"),
    ("data", "max_text_length"): (256, "text tokens"),
    ("data", "max_speech_seconds"): (5.0, "speech crop (s)"),
    ("data", "n_folds"): (5, "session folds"),
}
PROTOCOL = (
    "Tasks are learned strictly in sequence; the reference's `adapter` run trained both corpora alternately in "
    "every epoch (here that setting is `joint`).",
    "One model is scored after each task on every task (the matrix R), not each task with its own best "
    "checkpoint; weighted F1, macro F1, UAR and accuracy, macro F1 and UAR over the classes of each test set.",
    "EWC's Fisher comes from the earlier task's training data (in one order the reference used the new task's), "
    "from a seeded random sample of `fisher_samples` utterances, in eval mode (no dropout), from per-utterance "
    "gradients (the empirical Fisher).",
    "Speech adapters are Houlsby bottleneck adapters inside every Wav2Vec2 layer (the reference: a stack of "
    "strided convolutions after the frozen encoder, about 10.6 M parameters per task); with task-specific layer "
    "norms, Wav2Vec2's layers get them too (the reference's text adapters only had them).",
    "The convolutional feature encoder is frozen in every strategy (the reference's fine-tuning baseline trained "
    "it), as transformers recommends; its output is computed once per utterance and cached.",
    "Text adapters are the `adapters` library's `double_seq_bn` (the reference's own Houlsby module at the same "
    "two positions); AdamW is torch's fused kernel (the same update rule).",
    "Audio is read with soundfile and resampled with soxr (no torchaudio), so resampled corpora may differ in "
    "the last bits.",
    "Strategies are tuned by one rule when a tuning grid is given (see Tuning); the reference used one learning "
    "rate for everything.",
)


def protocol_deviations(config: dict) -> list[str]:
    """The run's settings that differ from the reference's (`config`: results["config"]), one line each."""
    lines = []
    for (group, key), (reference, what) in REFERENCE_SETTINGS.items():
        if key not in config.get(group, {}):
            continue
        value = config[group][key]
        value = str(value).split(".")[-1].lower() if key == "lr_scheduler_type" else value
        if value != reference and not (isinstance(reference, float) and value == float(reference)):
            lines.append(f"{what}: {value} (reference: {reference})")
    return lines


def precision_deviations(environment: dict) -> list[str]:
    """Training and inference precision where they are not the reference's fp32 (`environment`: where it ran)."""
    lines = []
    gpu = str(environment.get("device", "")).startswith("cuda")
    where = environment.get("cuda") if gpu else f"a CPU with {environment.get('cpu_isa')}"
    for key, what in (("train_precision", "training precision"),
                      ("inference_precision", "scoring and routing precision (autocast)")):
        value = environment.get(key, "fp32")
        if value != "fp32":
            lines.append(f"{what}: {value} on {where} (reference: fp32)")
    return lines


def protocol_section(results: dict) -> list[str]:
    specific = protocol_deviations(results.get("config", {})) + precision_deviations(results.get("environment", {}))
    lines = ["## Protocol", "", "Session-wise cross-validation as the reference (its folds exactly). Deviations "
             "from the reference method that hold for every run:", ""]
    lines += [f"- {line}" for line in PROTOCOL]
    lines += ["", "Settings of this run that differ from the reference's:" if specific else
              "No setting of this run differs from the reference's.", ""]
    return lines + [f"- {line}" for line in specific] + ([""] if specific else [])


def tuning_table(results: dict) -> list[str]:
    """The tuning rule, every trial's validation criterion and the setting each strategy got."""
    tuning = results.get("tuning")
    if not tuning:
        return []
    lines = ["## Tuning", "",
             f"One rule for every strategy ({tuning['budget']} trial(s) each, fold {tuning['fold']}, orders "
             f"{', '.join(tuning['orders'])}): {tuning['rule']}. Criterion: {tuning['criterion']}.", "",
             "| strategy | chosen | trials (settings: criterion) |", "|---|---|---|"]
    for name, data in tuning["strategies"].items():
        trials = "; ".join(f"{format_settings(item['settings'])}: "
                           + ("-" if item["criterion"] is None else f"{item['criterion']:.3f}")
                           for item in data["trials"])
        lines.append(f"| {name} | {format_settings(data['settings'])} | {trials} |")
    return lines + [""]


def format_settings(settings: dict, separator: str = " ") -> str:
    """`learning_rate 0.01, ewc_lambda 5000` (or with another separator) of a trial's settings."""
    return ", ".join(f"{key}{separator}{value:g}" if isinstance(value, float) else f"{key}{separator}{value}"
                     for key, value in settings.items()) or "defaults"


def comparison_table(results: dict) -> list[str]:
    """Paired differences between strategies on the same cells (results["comparisons"])."""
    comparisons = results.get("comparisons") or []
    if not comparisons:
        return []
    lines = ["## Paired comparisons", "",
             "First minus second strategy in the final average over tasks (the last row of R; `task_a`: each task's "
             "own score), on the cells both ran (same fold, seed and order): mean difference [95 % CI], two-sided "
             "Wilcoxon signed-rank p-value, number of pairs. Interval and test are over the folds (a fold's pairs "
             "averaged first): with 5 folds no two-sided p-value is below 0.0625.", "",
             "| first vs second | " + " | ".join(METRIC_NAMES[m] for m in TABLE_METRICS) + " |",
             "|---|" + "---|" * len(TABLE_METRICS)]
    for item in comparisons:
        lines.append(f"| {item['first']} vs {item['second']} | "
                     + " | ".join(format_difference(item.get(m)) for m in TABLE_METRICS) + " |")
    return lines + [""]


def task_forgetting_table(results: dict) -> list[str]:
    """Each task's forgetting with its interval: an average over tasks can hide a task forgotten in one order
    behind another that gained in the other."""
    rows = [(strategy, task, scores) for strategy, data in results["strategies"].items()
            for task, scores in (data.get("forgetting_by_task") or {}).items()]
    if not rows:
        return []
    lines = ["", "### Forgetting of each task", "",
             "Score right after learning the task minus its score after the last task, over the cells in which "
             "another task was learned after it: mean ± std [95 % CI] (positive: forgotten; negative: it gained).", "",
             "| strategy | task | cells | " + " | ".join(f"forgetting {METRIC_NAMES[m]}" for m in TABLE_METRICS)
             + " |",
             "|---|---|---|" + "---|" * len(TABLE_METRICS)]
    for strategy, task, scores in rows:
        cells = max((score["n"] for score in scores.values() if score), default=0)
        lines.append(f"| {strategy} | {task.upper()} | {cells} | "
                     + " | ".join(format_score(scores.get(m)) for m in TABLE_METRICS) + " |")
    return lines


def interval_reading(summary: dict) -> str:
    """Whether a forgetting's 95 % interval lies above 0, below it, or includes it."""
    interval = summary.get("ci95")
    if not interval:
        return "one fold, no interval"
    span = f"95 % CI {interval[0]:+.3f} to {interval[1]:+.3f}"
    if interval[0] > 0:
        return f"{span}: forgotten beyond the interval"
    if interval[1] < 0:
        return f"{span}: it gained beyond the interval"
    return f"{span}: the interval includes 0"


def cells_and_folds(summary: dict, noun: str = "cell") -> str:
    """`10 cells in 5 folds` (`3 cells` when each cell is its own fold)."""
    n, units = summary["n"], summary.get("units", summary["n"])
    text = f"{n} {noun}{'s' if n != 1 else ''}"
    return text + (f" in {units} fold{'s' if units != 1 else ''}" if units != n else "")


def findings(results: dict) -> list[str]:
    """Sentences generated from the numbers of results.json (nothing here is written by hand)."""
    lines = []
    for strategy, data in results["strategies"].items():
        forgetting = data["forgetting"].get("macro_f1")
        if not forgetting:
            continue
        cells = [cell for cell in data["folds"] if len(cell["order"]) > 1]
        exact = all(row[j] == cell["matrix"]["macro_f1"][j][j] for cell in cells
                    for row in cell["matrix"]["macro_f1"] for j in range(len(row)) if row[j] is not None)
        if exact:
            lines.append(f"- `{strategy}` forgot nothing: every earlier task's macro F1 stayed exactly equal in all "
                         f"{len(cells)} cells.")
        else:
            interval = forgetting.get("ci95")
            extra = f" (95 % CI {interval[0]:+.3f} to {interval[1]:+.3f})" if interval else ""
            lines.append(f"- `{strategy}` forgetting in macro F1: {forgetting['mean']:+.3f} on average over "
                         f"{cells_and_folds(forgetting)}{extra}.")
            for task, scores in (data.get("forgetting_by_task") or {}).items():
                if scores.get("macro_f1"):
                    lines.append(f"  - of {task.upper()}: {scores['macro_f1']['mean']:+.3f} over "
                                 f"{cells_and_folds(scores['macro_f1'])} ({interval_reading(scores['macro_f1'])}).")
    return (["## Findings (generated from results.json)", "", *lines, ""]) if lines else []


def scenario_table(results: dict) -> list[str]:
    """Which continual-learning scenario each strategy ran in, and the tasks received without their data."""
    lines = ["## Strategies and scenarios", "", "| strategy | what it does | scenario |", "|---|---|---|"]
    records = results.get("strategy_records", {})
    for strategy, data in results["strategies"].items():
        summary = records.get(strategy, {}).get("summary", "")
        lines.append(f"| {strategy} | {summary} | {data.get('scenario') or '-'} |")
    lines.append("")
    labels = results.get("labels", {})
    if labels:
        lines += ["Label sets: " + "; ".join(f"{task.upper()} {len(names)} classes ({', '.join(names)})"
                                             for task, names in labels.items()) + ".", ""]
    received = results.get("received") or []
    if received:
        lines += ["Received without data (loaded frozen before the first task; routed among, never scored here): "
                  + ", ".join(f"`{item['task']}` from {item['source']}" for item in received) + ".", ""]
    return lines


def agnostic_table(results: dict) -> list[str]:
    """Routing accuracy per method and the scores with the task id given versus routed (adapter strategies)."""
    rows = {strategy: data["task_agnostic"] for strategy, data in results["strategies"].items()
            if data.get("task_agnostic")}
    if not rows:
        return []
    methods = list(next(iter(rows.values()))["routing_accuracy"])
    lines = ["## Without the task id", "",
             "After the whole sequence, each test utterance of every task is routed to a task's adapters without "
             "its task label, from per-task feature statistics stored with each export (no training data kept; "
             "see `routing.py`). Routing accuracy per method; scores with the task id given / routed by "
             f"`{next(iter(rows.values()))['method']}` (mean over tasks, folds and orders).", "",
             "| strategy | " + " | ".join(f"routing: {method}" for method in methods) + " | "
             + " | ".join(f"{METRIC_NAMES[m]} given / routed" for m in TABLE_METRICS) + " |",
             "|---|" + "---|" * (len(methods) + len(TABLE_METRICS))]
    for strategy, data in rows.items():
        accuracy = [format_score(data["routing_accuracy"][method]) for method in methods]
        scores = [f"{data['aware'][m]['mean']:.3f} / {data['agnostic'][m]['mean']:.3f}" for m in TABLE_METRICS]
        lines.append(f"| {strategy} | " + " | ".join(accuracy + scores) + " |")
    return lines + [""]


# ------------------------------------------------------------------------------------------------- figures


def write_figures(results: dict, folder: Path, confusions: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    strategies = list(results["strategies"])
    tasks = results["tasks"]

    for strategy in strategies:
        present = [task for task in tasks if (strategy, task) in confusions]
        if not present:
            continue
        figure, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 4.4), squeeze=False)
        for axis, task in zip(axes[0], present):
            counts = confusions[(strategy, task)]
            labels = results.get("labels", {}).get(task) or [str(i) for i in range(len(counts))]
            rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            axis.imshow(rates, vmin=0, vmax=1, cmap="Blues")
            for i in range(len(labels)):
                for j in range(len(labels)):
                    axis.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                              color="white" if rates[i, j] > 0.5 else "black")
            axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
            axis.set_yticks(range(len(labels)), labels, fontsize=8)
            axis.set_xlabel("predicted")
            axis.set_ylabel("reference")
            axis.set_title(f"{task.upper()} after the sequence", fontsize=9)
        written.append(_save(figure, f"{strategy}: confusion (counts, colour = row rate), summed over folds",
                             folder / f"confusion_{strategy}.png"))

    sequential = [s for s in strategies if get_strategy(s).carries_model]
    if sequential:
        figure, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
        for axis, metric in zip(axes[0], ("weighted_f1", "macro_f1")):
            width = 0.8 / (2 * len(tasks))
            for t, task in enumerate(tasks):
                after = [(retained(results, s, task, metric) or {}).get("mean", np.nan) for s in sequential]
                learned = [_just_learned(results, s, task, metric) for s in sequential]
                x = np.arange(len(sequential)) + (2 * t - len(tasks) + 0.5) * width
                axis.bar(x, learned, width, label=f"{task.upper()} right after learning it", alpha=0.55)
                axis.bar(x + width, after, width, label=f"{task.upper()} after the whole sequence")
            axis.set_xticks(np.arange(len(sequential)), sequential, rotation=20)
            axis.set_ylim(0, 1)
            axis.set_title(METRIC_NAMES[metric])
        axes[0][0].legend(fontsize=7, loc="upper left")
        written.append(_save(figure, "Forgetting: each corpus learned first, before and after the second corpus",
                             folder / "forgetting.png"))

    with_dimensions = dimensional_strategies(results)
    if with_dimensions:
        figure, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
        for axis, dimension in zip(axes[0], DIMENSIONS):
            metric = f"{dimension}_ccc"
            width = 0.8 / len(tasks)
            for t, task in enumerate(tasks):
                kept = [(retained(results, s, task, metric) or {}).get("mean", np.nan) for s in with_dimensions]
                x = np.arange(len(with_dimensions)) + (t - (len(tasks) - 1) / 2) * width
                axis.bar(x, kept, width, label=f"{task.upper()} after the sequence")
                linear = (dimension_floor(results, task, "linear", metric) or {}).get("mean")
                if linear is not None:
                    axis.axhline(linear, color=f"C{t}", linestyle="--", linewidth=1,
                                 label=f"{task.upper()} linear baseline")
            axis.set_xticks(np.arange(len(with_dimensions)), with_dimensions, rotation=20)
            axis.set_ylim(min(0.0, axis.get_ylim()[0]), 1)
            axis.set_title(f"{dimension} CCC")
        axes[0][0].legend(fontsize=7, loc="upper left")
        written.append(_save(figure, "Valence and arousal: CCC each task keeps (dashed: its linear baseline)",
                             folder / "dimensions.png"))

    tuning = results.get("tuning") or {}
    for name, data in (tuning.get("strategies") or {}).items():
        points = [item for item in data["trials"] if item.get("earlier_tasks") is not None]
        keys = [key for key in (tuning.get("grid") or {}) if key in ("ewc_lambda", "lwf_alpha")]
        if len(points) < 2 or not any(key in points[0]["settings"] for key in keys):
            continue
        figure, axis = plt.subplots(figsize=(6.5, 4.6))
        for item in points:
            axis.scatter(item["new_task"], item["earlier_tasks"], color="tab:red" if item["trial"] == data["chosen"]
                         else "tab:blue")
            label = format_settings(item["settings"]).replace("learning_rate", "lr").replace("ewc_lambda", "lambda")
            axis.annotate(label.replace("lwf_alpha", "alpha"), (item["new_task"], item["earlier_tasks"]),
                          fontsize=7, xytext=(4, 4), textcoords="offset points")
        axis.margins(0.3)
        axis.set_xlabel("new task (validation macro F1 after the sequence)")
        axis.set_ylabel("earlier tasks (validation macro F1 after the sequence)")
        written.append(_save(figure, f"{name}: stability-plasticity over its tuning trials (red: chosen)",
                             folder / f"tradeoff_{name}.png"))

    for strategy in strategies:
        folds = results["strategies"][strategy]["folds"]
        orders = sorted({">".join(cell["order"]) for cell in folds})
        figure, axes = plt.subplots(1, len(orders), figsize=(4.2 * len(orders), 3.6), squeeze=False)
        for axis, key in zip(axes[0], orders):
            order = key.split(">")
            stack = np.array([[[np.nan if v is None else v for v in row] for row in cell["matrix"]["weighted_f1"]]
                              for cell in folds if cell["order"] == order], dtype=float)
            with warnings.catch_warnings():  # a cell never scored (nan in every fold) stays nan, silently
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(stack, axis=0)
            axis.imshow(np.nan_to_num(mean, nan=0.0), vmin=0, vmax=1, cmap="viridis")
            for i in range(len(order)):
                for j in range(len(order)):
                    text = "-" if np.isnan(mean[i, j]) else f"{mean[i, j]:.2f}"
                    axis.text(j, i, text, ha="center", va="center", color="white")
            axis.set_xticks(range(len(order)), [f"on {t}" for t in order])
            axis.set_yticks(range(len(order)), [f"after {t}" for t in order])
            axis.set_title(" -> ".join(order), fontsize=9)
        written.append(_save(figure, f"{strategy}: score matrix R (weighted F1, mean over folds)",
                             folder / f"matrix_{strategy}.png"))
    return written


def _save(figure, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _just_learned(results: dict, strategy: str, task: str, metric: str) -> float:
    """Mean over folds of R[0][0] in the order where `task` is first."""
    values = [cell["matrix"][metric][0][0] for cell in results["strategies"][strategy]["folds"]
              if cell["order"][0] == task and cell["matrix"][metric][0][0] is not None]
    return float(np.mean(values)) if values else np.nan

