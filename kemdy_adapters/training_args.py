"""Arguments of a continual run: the model, the data, and `ContinualTrainingArguments(TrainingArguments)`.

All three are dataclasses parsed by `HfArgumentParser` from command-line flags or a YAML/JSON file
(`parse_arguments`). Defaults follow the reference method: lr 1e-5, batch 8, 40 epochs, class-balanced
sampling, EWC lambda 5000, text truncated at 256 tokens, speech cropped at 5 s, the epoch with the best
validation micro F1 kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from .precision import PRECISIONS
from .strategies import SHARED_HEAD, STRATEGIES, get_strategy
from .tasks import TaskSpec, resolve_task, split_task_items

SELECTION_METRICS = ("micro_f1", "accuracy", "weighted_f1", "macro_f1", "uar", "loss")
__all__ = ["SHARED_HEAD", "STRATEGIES", "ContinualTrainingArguments", "DataArguments", "ModelArguments"]


@dataclass
class ModelArguments:
    """The encoders and the adapters."""

    text_model: str = field(default="klue/bert-base", metadata={"help": "BERT checkpoint id or local folder"})
    speech_model: str = field(
        default="facebook/wav2vec2-base-960h", metadata={"help": "Wav2Vec2 checkpoint id or local folder"}
    )
    adapter_method: str = field(default="houlsby", metadata={"help": "houlsby (double_seq_bn) or lora"})
    adapter_reduction_factor: int = field(default=12, metadata={"help": "hidden size / bottleneck (12: 64 at 768)"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (adapter_method=lora)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (adapter_method=lora)"})
    projector_size: int = field(default=256, metadata={"help": "per-task speech projection size"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the classifier"})
    speech_frozen_layers: int = field(
        default=0, metadata={"help": "lowest Wav2Vec2 layers without adapters; cached once in adapter strategies"})
    adapter_non_linearity: str = field(
        default="swish", metadata={"help": "Houlsby adapters' activation (the reference method: gelu)"})
    adapter_init: str = field(
        default="bert", metadata={"help": "adapter initialisation: bert, houlsby or reference (all near identity)"})
    task_layer_norms: bool = field(
        default=False, metadata={"help": "a copy of every adapted layer's layer norms per task (the reference's)"})
    dimension_weight: float = field(
        default=0.0, metadata={"help": "> 0: tasks with valence/arousal (KEMDy; corpus folders with those columns) "
                                       "also learn them, this weight x the dimension loss beside cross-entropy"})
    dimension_loss: str = field(
        default="mse", metadata={"help": "the valence/arousal loss: mse (on the 1-5 scale) or ccc (1 - CCC)"})
    text_pooling: str = field(
        default="cls", metadata={"help": "the text vector: cls (BERT's pooled [CLS], the reference's), mean (the "
                                         "last layer's mean over the real tokens), cls_mean (both) or "
                                         "attention (the tokens weighted by a learned per-task query)"})
    speech_pooling: str = field(
        default="mean", metadata={"help": "the speech vector: mean (over the real frames of the task's projection, "
                                          "the reference's) or mean_std (their mean and standard deviation)"})
    modality_dropout: float = field(
        default=0.0, metadata={"help": "training only: probability that an utterance loses its text or its speech "
                                       "vector (each half as likely), so the classifier learns each alone too"})


@dataclass
class DataArguments:
    """Where the corpora are and how they are cut into model inputs."""

    data_dir: str = field(
        default=None,
        metadata={"help": "folder holding KEMDy19/ and KEMDy20_v1_1/ (or pass --kemdy19_dir / --kemdy20_dir)"},
    )
    kemdy19_dir: str = field(default=None, metadata={"help": "the unpacked KEMDy19 folder (overrides data_dir)"})
    kemdy20_dir: str = field(default=None, metadata={"help": "the unpacked KEMDy20_v1_1 folder (overrides data_dir)"})
    fold: int = field(default=0, metadata={"help": "session fold, 0..n_folds-1"})
    n_folds: int = field(default=5, metadata={"help": "session folds (5 in the reference protocol)"})
    fold_seed: int = field(default=12, metadata={"help": "KFold random_state (12 in the reference protocol)"})
    max_text_length: int = field(default=256, metadata={"help": "token limit"})
    max_speech_seconds: float = field(default=5.0, metadata={"help": "speech crop (seconds from the start)"})
    dataset_cache_dir: str = field(default=None, metadata={"help": "datasets cache folder"})
    corpora: list[str] = field(
        default_factory=list,
        metadata={"help": "corpus folders of further tasks as name=path (generic layout: metadata.csv beside the "
                          "audio; see README, Add your own corpus); --tasks and --orders accept name=path too"})

    def __post_init__(self):
        _, self.corpus_locations = split_task_items(self.corpora)
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold must be in 0..{self.n_folds - 1} (n_folds {self.n_folds}), got {self.fold}")
        if self.max_speech_seconds <= 0 or self.max_text_length < 2:
            raise ValueError(f"max_speech_seconds must be > 0 and max_text_length >= 2, got "
                             f"{self.max_speech_seconds} and {self.max_text_length}")

    def task_spec(self, task: str, locations: dict[str, str] | None = None) -> TaskSpec:
        """The spec of task `task`: a folder named by `locations` or `corpora`, else a KEMDy corpus."""
        location = (locations or {}).get(task) or self.corpus_locations.get(task)
        kemdy = getattr(self, f"{task}_dir", None) or self.data_dir
        return resolve_task(task, location, kemdy_dir=kemdy)


@dataclass
class ContinualTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the continual-learning settings.

    The task loop creates one `Trainer` per task with these arguments (output_dir set per task), so no
    optimizer, scheduler or best-model state leaks from one task to the next.
    """

    # --- continual learning
    tasks: list[str] = field(
        default_factory=lambda: ["kemdy19", "kemdy20"],
        metadata={"help": "the tasks in training order: kemdy19, kemdy20, or name=path for any corpus folder"},
    )
    from_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "task adapters received from elsewhere (Hub repo ids or task folders), loaded frozen "
                          "before the first task (adapter strategies)"},
    )
    allow_unverified_tasks: bool = field(
        default=False, metadata={"help": "accept received tasks without an integrity record (older exports)"})
    strategy: str = field(default="adapter", metadata={"help": f"one of {', '.join(STRATEGIES)}"})
    ewc_lambda: float = field(default=5000.0, metadata={"help": "EWC penalty weight (strategy ewc)"})
    ewc_gamma: float = field(default=1.0, metadata={"help": "online EWC decay of earlier Fisher information"})
    lwf_alpha: float = field(default=1.0, metadata={"help": "weight of the LwF distillation loss (strategy lwf)"})
    lwf_temperature: float = field(default=2.0, metadata={"help": "softmax temperature of LwF's distillation"})
    fisher_samples: int = field(default=2000, metadata={"help": "training utterances used to estimate the Fisher"})
    fisher_batch_size: int = field(default=1, metadata={"help": "batch size of the Fisher estimate (1: exact)"})
    class_balanced_sampling: bool = field(
        default=True, metadata={"help": "draw training utterances with inverse class frequency (as the reference)"}
    )
    selection_metric: str = field(
        default="micro_f1", metadata={"help": f"validation metric that picks the kept epoch: {SELECTION_METRICS}"}
    )
    weight_average_decay: float = field(
        default=0.0,
        metadata={"help": "> 0: validate, keep and export an exponential moving average of the trained weights "
                          "(this decay per optimizer step, bias-corrected) rather than the last step's weights"})
    cache_speech_features: bool = field(
        default=True,
        metadata={"help": "run the frozen convolutional feature encoder once per utterance and reuse its output"},
    )
    inference_precision: str = field(
        default="auto",
        metadata={"help": "precision of scoring and routing: auto (bf16 where the CPU/GPU computes it natively), "
                          "fp32, bf16 or fp16 (GPU); training precision is --bf16 / --fp16 (see precision.py)"})
    console_logs: bool = field(
        default=False,
        metadata={"help": "also print Trainer's per-epoch metric dictionaries and datasets' progress bars (they "
                          "always go to <task>/logs/trainer_log.jsonl)"})
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "keep the Trainer checkpoints of a finished task (they are large)"}
    )

    # --- reference defaults for inherited fields
    optim: str = field(
        default="adamw_torch_fused",
        metadata={"help": "optimizer; the fused AdamW kernel (CPU and GPU) updates 4x faster than the default"})
    output_dir: str = field(default="runs/train", metadata={"help": "run folder"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "batch size per device"})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "evaluation batch size per device"})
    num_train_epochs: float = field(default=40.0, metadata={"help": "epochs per task"})
    eval_strategy: str = field(default="epoch", metadata={"help": "validate every epoch (model selection)"})
    save_strategy: str = field(default="epoch", metadata={"help": "checkpoint every epoch (resume)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept per task (best + last)"})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "keep the best validation epoch"})
    logging_strategy: str = field(default="epoch", metadata={"help": "log every epoch"})
    report_to: str = field(default="none", metadata={"help": "experiment trackers"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "data loading processes"})
    ddp_find_unused_parameters: bool = field(
        default=False, metadata={"help": "frozen parameters are excluded from DDP, nothing is unused"}
    )

    def __post_init__(self):
        strategy = get_strategy(self.strategy)
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(f"unknown selection_metric {self.selection_metric!r}; choose one of {SELECTION_METRICS}")
        if self.inference_precision not in PRECISIONS:  # fails here, not after training
            raise ValueError(f"inference_precision must be one of {PRECISIONS}, got {self.inference_precision!r}")
        # name=path items: the name is the task, the path its corpus folder (kept in task_locations).
        self.tasks, locations = split_task_items(self.tasks)
        self.task_locations = {**getattr(self, "task_locations", {}), **locations}
        if len(set(self.tasks)) != len(self.tasks) or not self.tasks:
            raise ValueError(f"tasks must be distinct and not empty, got {self.tasks}")
        if self.from_tasks and not strategy.receives:
            raise ValueError(f"strategy {self.strategy!r} cannot continue from received tasks (--from_tasks): only "
                             f"the adapter strategies keep earlier tasks untouched")
        _check_numbers(self)
        self.metric_for_best_model = self.selection_metric
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per DataLoader
        self.greater_is_better = self.selection_metric != "loss"
        super().__post_init__()


def _check_numbers(args: ContinualTrainingArguments) -> None:
    """Refuses settings under which nothing would train, or nonsense, before any work starts."""
    problems = []
    if args.max_steps is None or args.max_steps <= 0:
        if not args.num_train_epochs > 0:
            problems.append(f"num_train_epochs must be > 0 (or max_steps > 0), got {args.num_train_epochs}")
    if not args.learning_rate > 0:
        problems.append(f"learning_rate must be > 0, got {args.learning_rate}")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "fisher_samples", "fisher_batch_size",
                 "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(args, name)}")
    if args.ewc_lambda < 0 or args.lwf_alpha < 0:
        problems.append(f"ewc_lambda and lwf_alpha must be >= 0, got {args.ewc_lambda} and {args.lwf_alpha}")
    if not 0 < args.ewc_gamma <= 1:
        problems.append(f"ewc_gamma must be in (0, 1], got {args.ewc_gamma}")
    if not 0 <= args.weight_average_decay < 1:
        problems.append(f"weight_average_decay must be in [0, 1), got {args.weight_average_decay}")
    if not args.lwf_temperature > 0:
        problems.append(f"lwf_temperature must be > 0, got {args.lwf_temperature}")
    if args.weight_decay < 0 or (args.max_grad_norm is not None and args.max_grad_norm < 0):
        problems.append(f"weight_decay and max_grad_norm must be >= 0, got {args.weight_decay} and "
                        f"{args.max_grad_norm}")
    if problems:
        raise ValueError("; ".join(problems))


def parse_with(parser: HfArgumentParser, argv: list[str] | None):
    """Flags, or one YAML/JSON file (its only argument), into the parser's dataclasses."""
    if argv and len(argv) == 1 and Path(argv[0]).suffix in {".yaml", ".yml", ".json"}:
        path = Path(argv[0]).resolve()
        if path.suffix == ".json":
            return parser.parse_json_file(str(path))
        return parser.parse_yaml_file(str(path))
    return parser.parse_args_into_dataclasses(args=argv)


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, ContinualTrainingArguments]:
    """The arguments of one continual run, from flags or a YAML/JSON file."""
    parser = HfArgumentParser((ModelArguments, DataArguments, ContinualTrainingArguments), prog="kemdy-adapters train")
    model_args, data_args, args = parse_with(parser, argv)
    check_task_sources(data_args, args.tasks, args.task_locations)
    return model_args, data_args, args


def check_task_sources(data_args: DataArguments, tasks: list[str], locations: dict[str, str]) -> None:
    """Every task is a KEMDy corpus or has a corpus folder (checked before any work; the folder is read later)."""
    from .corpus import CORPORA

    lacking = [task for task in tasks
               if task not in CORPORA and task not in locations and task not in data_args.corpus_locations]
    if lacking:
        raise ValueError(f"task(s) {lacking} have no corpus: name each as name=/path/to/folder (a folder with "
                         f"metadata.csv or metadata.jsonl), or use one of the KEMDy corpora {list(CORPORA)}")


def task_specs(data_args: DataArguments, args: ContinualTrainingArguments, tasks=None) -> dict[str, TaskSpec]:
    """The spec of every task of a run (or of `tasks`), each checked: its corpus folder exists and reads."""
    return {task: data_args.task_spec(task, args.task_locations) for task in (tasks or args.tasks)}
