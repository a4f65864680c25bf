"""`kemdy-adapters bench`: training and inference throughput, peak memory and trainable parameters.

One JSON line per case (strategy x shape). Inputs follow a fixed distribution so figures compare across tools:
text lengths uniform in 8..64 tokens, audio uniform in 1..5 s at 16 kHz, fixed seed; batch 4 at base shapes.
Base shapes are the klue/bert-base and wav2vec2-base-960h configs with random weights (no download). Each case
runs in its own process so its peak resident memory is its own. Figures are medians over timed steps after
warm-up steps; nothing here is a test.

Training is timed as the task loop trains: from the cached output of the frozen convolutional feature encoder
(`train_utt_per_s`); `train_waveform_utt_per_s` times the same step from waveforms. Inference is timed from
waveforms (what a served request brings), in float32 and with dynamic int8 quantisation of the linear layers
(`infer_int8_utt_per_s`, `inference.quantize_int8`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SHAPES = ("tiny", "base")
SPEECH_INPUTS = ("speech_features", "speech_hidden", "speech_frame_mask")
STRATEGIES = ("finetune", "adapter", "plain_finetune", "plain_adapter")
"""`plain_*`: same-machine baselines shaped like the reference method's models, not strategies of the package
(see `_plain_model`)."""


def _configs(shape: str):
    from transformers import BertConfig, Wav2Vec2Config

    from .tiny import tiny_speech_config, tiny_text_config

    if shape == "tiny":
        return tiny_text_config(vocab_size=512, hidden_size=64), tiny_speech_config(hidden_size=64)
    # klue/bert-base: BERT-base with a 32,000-piece vocabulary; wav2vec2-base-960h: the Wav2Vec2Config defaults
    # (post-LN, group-norm feature encoder, 12 layers of 768), with its LayerDrop/SpecAugment as the model sets.
    return BertConfig(vocab_size=32000), Wav2Vec2Config(vocab_size=32)


def _batches(count: int, batch_size: int, vocab: int, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        tokens = torch.randint(8, 65, (batch_size,), generator=generator)
        samples = (torch.rand(batch_size, generator=generator) * 4 + 1) * 16000
        samples = samples.long()
        input_ids = torch.zeros(batch_size, int(tokens.max()), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        values = torch.zeros(batch_size, int(samples.max()))
        speech_mask = torch.zeros(batch_size, int(samples.max()), dtype=torch.long)
        for i in range(batch_size):
            input_ids[i, : tokens[i]] = torch.randint(5, vocab, (int(tokens[i]),), generator=generator)
            attention_mask[i, : tokens[i]] = 1
            values[i, : samples[i]] = torch.randn(int(samples[i]), generator=generator)
            speech_mask[i, : samples[i]] = 1
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask, "input_values": values,
                        "speech_attention_mask": speech_mask,
                        "labels": torch.randint(0, 7, (batch_size,), generator=generator)})
    return batches


def _model(shape: str, strategy: str, seed: int, frozen_layers: int = 0):
    import torch

    from .configuration import MultimodalEmotionConfig
    from .modeling import MultimodalEmotionModel

    torch.manual_seed(seed)
    text, speech = _configs(shape)
    model = MultimodalEmotionModel(MultimodalEmotionConfig(
        text_config=text, speech_config=speech,
        speech_frozen_layers=frozen_layers if strategy == "adapter" else 0))
    if strategy == "adapter":
        model.add_task("task")
        model.train_task("task")
    else:
        model.add_task("shared", adapters=False)
        model.train_task("shared", full=True)
    return model


def _plain_model(shape: str, strategy: str, seed: int):
    """The reference method's models rebuilt from plain transformers modules, as baselines measured beside ours
    on the same machine, trained from waveforms with torch's default AdamW:
    - `plain_finetune`: BERT and Wav2Vec2, every weight trained (the convolutional feature encoder too);
    - `plain_adapter`: Houlsby adapters (bottleneck 64) in a frozen BERT, a frozen Wav2Vec2 followed by
      transformers' convolutional `Wav2Vec2Adapter` (3 layers, stride 2 each).
    Both project speech to 256, average it over real frames and classify [CLS; speech] into 7 emotions."""
    import adapters
    import torch
    from torch import nn
    from transformers import BertModel, Wav2Vec2Model
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Adapter

    class Plain(nn.Module):
        def __init__(self, text_config, speech_config):
            super().__init__()
            self.config = type("Config", (), {"text_config": text_config})()
            self.bert, self.wav2vec2 = BertModel(text_config), Wav2Vec2Model(speech_config)
            self.speech_adapter = None
            if strategy == "plain_adapter":
                adapters.init(self.bert)
                self.bert.add_adapter("task", config=adapters.DoubleSeqBnConfig(reduction_factor=12))
                self.bert.train_adapter("task")
                self.wav2vec2.requires_grad_(False)
                self.speech_adapter = Wav2Vec2Adapter(speech_config)
            self.projector = nn.Linear(speech_config.hidden_size, 256)
            self.dropout = nn.Dropout(0.1)
            self.classifier = nn.Linear(text_config.hidden_size + 256, 7)

        def forward(self, input_ids, attention_mask, input_values, speech_attention_mask, labels=None):
            text = self.bert(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            hidden = self.wav2vec2(input_values, attention_mask=speech_attention_mask).last_hidden_state
            if self.speech_adapter is not None:
                hidden = self.speech_adapter(hidden)
            frames = self.wav2vec2._get_feature_vector_attention_mask(
                hidden.shape[1], speech_attention_mask, add_adapter=self.speech_adapter is not None)
            weights = frames.unsqueeze(-1).to(hidden.dtype)
            speech = (self.projector(hidden) * weights).sum(1) / weights.sum(1)
            logits = self.classifier(self.dropout(torch.cat([text, speech], -1)))
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return type("Output", (), {"loss": loss, "logits": logits})()

    torch.manual_seed(seed)
    return Plain(*_configs(shape))


def _with_features(model, batch: dict) -> dict:
    """The batch as the task loop trains on it: the cached output of the frozen speech part (the feature encoder,
    or everything below the layer boundary) instead of the waveform."""
    key, output, mask = model.frozen_speech(batch["input_values"], batch["speech_attention_mask"])
    rest = {k: v for k, v in batch.items() if k not in ("input_values", "speech_attention_mask")}
    return rest | {key: output, "speech_frame_mask": mask}


def run_case(shape: str, strategy: str, batch_size: int, warmup: int, steps: int, seed: int,
             optimizer_kind: str = "fused", frozen_layers: int = 0, precisions: tuple[str, ...] = ("fp32", "bf16"),
             device: str = "cpu", training: bool = True) -> dict:
    """One case's figures: training (from cached features and from waveforms; unless `training` is False) and
    inference utterances per second in each of `precisions` (fp32 fields unsuffixed, the others `_bf16` /
    `_fp16`), int8 on a CPU."""
    import torch

    from .precision import autocast, cast_linear_weights, hardware, torch_dtype

    plain = strategy.startswith("plain_")
    model = _plain_model(shape, strategy, seed) if plain else _model(shape, strategy, seed, frozen_layers)
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parameters = sum(p.numel() for p in model.parameters())
    # The task loop's optimizer (ContinualTrainingArguments.optim = adamw_torch_fused); "foreach" is torch's
    # default AdamW, for before/after figures (and the plain baseline's).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                  fused=optimizer_kind == "fused" and not plain)
    batches = [{key: value.to(device) for key, value in batch.items()}
               for batch in _batches(warmup + steps, batch_size, model.config.text_config.vocab_size, seed)]
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def timed(step, inputs, precision="fp32"):
        durations = []
        for index, batch in enumerate(inputs):
            synchronize()
            started = time.perf_counter()
            with autocast(precision, device):
                step(batch)
            synchronize()
            if index >= warmup:
                durations.append(time.perf_counter() - started)
        return round(batch_size / statistics.median(durations), 3)

    def train_step(batch):
        model.train()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step(batch):
        model.eval()
        with torch.inference_mode():
            model(**{k: v for k, v in batch.items() if k != "labels"})

    # computed once, as the feature cache does (the plain baseline has no cache: it trains from waveforms)
    cached = batches if plain else [_with_features(model, batch) for batch in batches]
    figures = {}
    for precision in precisions if training else ():
        suffix = "" if precision == "fp32" else f"_{precision}"
        figures[f"train{suffix}_utt_per_s"] = timed(train_step, cached, precision)
        figures[f"train_waveform{suffix}_utt_per_s"] = timed(train_step, batches, precision)
    for precision in precisions:  # served as EmotionRecognizer serves: lower precision with its weights cast
        suffix = "" if precision == "fp32" else f"_{precision}"
        cast_linear_weights(model, torch_dtype(precision))
        figures[f"infer{suffix}_utt_per_s"] = timed(infer_step, batches, precision)
    cast_linear_weights(model, torch.float32)
    if torch.device(device).type == "cpu":
        from .inference import quantize_int8

        quantize_int8(model)  # last: the quantised model is only served
        figures["infer_int8_utt_per_s"] = timed(infer_step, batches)
    return {
        "shape": shape,
        "strategy": strategy,
        **hardware(device),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "speech_frozen_layers": 0 if plain else model.config.speech_frozen_layers,
        "optimizer": "foreach" if plain else optimizer_kind,
        **figures,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
        **({"peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3)}
           if torch.device(device).type == "cuda" else {}),
        "trainable_parameters": trainable,
        "model_parameters": parameters,
        "timed_steps": steps,
        "warmup_steps": warmup,
    }


def profile_step(shape: str, strategy: str, batch_size: int, seed: int, frozen_layers: int = 0,
                 rows: int = 15) -> str:
    """Where one training step's time goes: its phases timed, then torch.profiler's top operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    model = _model(shape, strategy, seed, frozen_layers)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    warm, batch = (_with_features(model, b) for b in _batches(2, batch_size, model.config.text_config.vocab_size,
                                                               seed))
    model.train()

    def step(batch, phases=None):
        started = time.perf_counter()
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        mark = time.perf_counter()
        hidden, mask = model.encode_speech(**{key: batch[key] for key in SPEECH_INPUTS if key in batch})
        head = model.heads[model.active_task]
        speech = (head.projector(hidden) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        loss = torch.nn.functional.cross_entropy(head.classifier(torch.cat([text, speech], -1)), batch["labels"])
        forward_done = time.perf_counter()
        loss.backward()
        backward_done = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if phases is not None:
            phases.update({"text forward": mark - started, "speech forward + head": forward_done - mark,
                           "backward": backward_done - forward_done,
                           "optimizer": time.perf_counter() - backward_done})

    step(warm)
    phases: dict = {}
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step(batch, phases)
    total = sum(phases.values())
    frames = int(batch["speech_frame_mask"].sum(1).max())
    lines = [f"profile of one training step: {shape} shapes, strategy {strategy}, "
             f"speech_frozen_layers {model.config.speech_frozen_layers}, batch {batch_size}, "
             f"{torch.get_num_threads()} threads, {frames} speech frames, {batch['input_ids'].shape[1]} tokens "
             f"(padded); {total:.2f} s"]
    lines += [f"  {name:<24} {seconds:7.2f} s  {100 * seconds / total:5.1f} %" for name, seconds in phases.items()]
    lines.append(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    return "\n".join(lines)


def save_shaped_encoders(folder, shape: str, seed: int = 0):
    """Random-weight encoders of `shape` (base: BERT-base and Wav2Vec2-base configs) saved with `save_pretrained`,
    with the shipped encoders' tokenizer and feature extractor, so a full run works at those shapes offline."""
    from pathlib import Path

    import torch
    from transformers import AutoTokenizer, BertModel, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from .pretrain import SHIPPED_ENCODERS

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_ENCODERS / "text")
    text_config, speech_config = _configs(shape)
    text_config.vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    BertModel(text_config).save_pretrained(folder / "text")
    tokenizer.save_pretrained(folder / "text")
    Wav2Vec2Model(speech_config).save_pretrained(folder / "speech")
    Wav2Vec2FeatureExtractor.from_pretrained(SHIPPED_ENCODERS / "speech").save_pretrained(folder / "speech")
    return folder / "text", folder / "speech"


def demo_cell(output, shape: str = "base", device: str = "cpu", epochs: int = 1, bf16: bool = True,
              corpus=None) -> dict:
    """One benchmark cell of the demo's recipe (adapter strategy, fold 0, KEMDy19 then KEMDy20 of the generated
    sample corpus, or `corpus`) with encoders of `shape`, trained with Trainer's `--bf16` and scored in bf16 (or
    both in fp32): its time and final macro F1 per task."""
    from pathlib import Path

    from .benchmark import Benchmark, parse_benchmark_arguments
    from .precision import hardware
    from .sample_corpus import write_sample_corpus

    output = Path(output)
    if corpus is None:
        corpus = output / "sample_corpus"
        if not corpus.exists():
            write_sample_corpus(corpus)
    text, speech = save_shaped_encoders(output / "encoders", shape)
    started = time.perf_counter()
    precision = "bf16" if bf16 else "fp32"
    results = Benchmark(*parse_benchmark_arguments([
        "--output_dir", str(output / "cell"), "--data_dir", str(corpus), "--text_model", str(text),
        "--speech_model", str(speech), "--strategies", "adapter", "--orders", "kemdy19,kemdy20", "--folds", "0",
        "--num_train_epochs", str(epochs), "--learning_rate", "1e-4", "--bf16", str(bf16).lower(),
        "--inference_precision", precision, "--use_cpu", str(device == "cpu").lower(),
        "--dataset_cache_dir", str(output / "hf_cache"), "--disable_tqdm", "true"])).run()
    final = results["strategies"]["adapter"]["final"]["kemdy19>kemdy20"]
    return {"check": "demo_cell", "shape": shape, "precision": precision, **hardware(device),
            "epochs": epochs, "seconds": round(time.perf_counter() - started, 1),
            "macro_f1": {task: round(scores["macro_f1"]["mean"], 4) for task, scores in final.items()}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kemdy-adapters bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speech-frozen-layers", type=int, default=0,
                        help="adapter cases: lowest Wav2Vec2 layers without adapters, trained from their output")
    parser.add_argument("--optimizer", choices=("fused", "foreach"), default="fused",
                        help="AdamW kernel (foreach: torch's default, as before the speed work)")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16", "fp16"), default=None,
                        help="precisions to time (default: fp32 and bf16, and fp16 on a GPU); bf16/fp16 run under "
                             "torch.autocast")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (a CUDA GPU)")
    parser.add_argument("--inference-only", action="store_true", help="time inference only (no training step)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: profile one training step of each case (phases and top operators)")
    parser.add_argument("--demo-cell", metavar="DIR",
                        help="instead: one benchmark cell of the demo's recipe at the first of --shapes, trained and "
                             "scored in bf16 (fp32 with --precisions fp32), written to DIR; one JSON line")
    parser.add_argument("--case", nargs=2, metavar=("SHAPE", "STRATEGY"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.precisions is None:
        args.precisions = ["fp32", "bf16", "fp16"] if args.device.startswith("cuda") else ["fp32", "bf16"]
    if args.demo_cell:
        print(json.dumps(demo_cell(args.demo_cell, args.shapes[0], args.device, bf16="bf16" in args.precisions)),
              flush=True)
        return 0
    if args.profile:
        import torch

        torch.set_num_threads(args.threads)
        for shape in args.shapes:
            for strategy in args.strategies:
                print(profile_step(shape, strategy, args.batch_size, args.seed, args.speech_frozen_layers),
                      flush=True)
        return 0
    if args.case:  # one case, in this (child) process
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_case(*args.case, args.batch_size, args.warmup, args.steps, args.seed,
                                  args.optimizer, args.speech_frozen_layers, tuple(args.precisions), args.device,
                                  not args.inference_only)),
              flush=True)
        return 0
    for shape in args.shapes:
        for strategy in args.strategies:
            command = [sys.executable, "-m", "kemdy_adapters.speed", "--case", shape, strategy,
                       "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps",
                       str(args.steps), "--threads", str(args.threads), "--seed", str(args.seed),
                       "--optimizer", args.optimizer,
                       "--speech-frozen-layers", str(args.speech_frozen_layers), "--device", args.device,
                       "--precisions", *args.precisions, *(["--inference-only"] if args.inference_only else [])]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(json.dumps({"shape": shape, "strategy": strategy, "error": result.stderr.strip()[-2000:]}))
                return 1
            print(result.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
