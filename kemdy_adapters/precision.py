"""Numeric precision where the model runs: which instructions the hardware has, and bf16/fp16 autocast for
inference where it has them.

Training precision is the Trainer's own: `--bf16 true` (CPUs with AVX-512-BF16 or AMX, and GPUs that have bf16)
or `--fp16 true` (GPUs). Inference (the task loop's scoring, the task-agnostic scores and routing features,
`predict` and `EmotionRecognizer`) follows `inference_precision`:

- `fp32`: full precision;
- `bf16`: `torch.autocast` with bfloat16 (matrix products in bf16, reductions and norms in fp32);
- `fp16`: `torch.autocast` with float16 (GPUs);
- `auto`: bf16 where the hardware computes it natively (a CPU with AVX-512-BF16 or AMX-BF16, a CUDA GPU with
  bf16), fp16 on a CUDA GPU without bf16, fp32 anywhere else (on an AVX2-only CPU bf16 is emulated, and slower).

Logits leave the model as float32 whatever the precision, so metrics, softmax and routing statistics are always
computed in fp32.

Serving (`EmotionRecognizer` in bf16) also stores the linear layers' weights in bf16 (`cast_linear_weights`):
autocast otherwise converts every frozen fp32 weight again on every call (at base shapes, a batch of the
bench's inputs took 0.30 s with fp32 weights under autocast and 0.27 s with bf16 ones). Norms, embeddings and
convolutions keep their fp32 weights.
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The /proc/cpuinfo flags that decide how fast fp32, bf16 and int8 run, in the order they are reported.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")
"""Environment variables that cap the instructions oneDNN, MKL and torch's own kernels use."""
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8", "avx_vnni")


@lru_cache(maxsize=1)
def cpu_instruction_sets() -> tuple[str, ...]:
    """The CPU's vector and matrix instruction sets among `CPU_FLAGS` (Linux: /proc/cpuinfo); elsewhere the level
    torch dispatches its kernels for (e.g. `("AVX2",)`)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in CPU_FLAGS if flag in present)
    except OSError:
        pass
    import torch

    return (torch.backends.cpu.get_cpu_capability(),)


def hardware(device="cpu") -> dict:
    """What a figure was measured on: the CPU's model and instruction sets, or the GPU's name."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(device),
                "gpu_bf16": bool(torch.cuda.is_bf16_supported())}
    described = {"device": "cpu", "cpu": _cpu_model(), "cpu_isa": " ".join(cpu_instruction_sets())}
    # Kernel dispatch limited below what the CPU has (e.g. to measure an AVX2-only machine on a newer one).
    limits = {name: os.environ[name] for name in ISA_LIMITS if name in os.environ}
    return described | ({"isa_limit": limits} if limits else {})


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(device="cpu") -> bool:
    """Whether `device` (a name or `torch.device`) computes bf16 matrix products natively (not emulated)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    isa = set(cpu_instruction_sets())
    return bool(isa & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device="cpu") -> str:
    """`fp32`, `bf16` or `fp16` for `precision` on `device` (`auto`: see the module docstring)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA GPU; use bf16 or fp32 on a CPU")
    return precision


def torch_dtype(precision: str):
    """The torch dtype of a resolved precision name (`fp32`, `bf16`, `fp16`)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def training_precision(args) -> str:
    """`bf16`, `fp16` or `fp32`: the precision Trainer trains in with these `TrainingArguments`."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def autocast(precision: str, device="cpu"):
    """A context manager running the model in `precision` (resolved, see `resolve_precision`) on `device`."""
    import torch

    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch_dtype(resolved))


def cast_linear_weights(model, dtype) -> None:
    """Stores every `nn.Linear`'s weight and bias in `dtype` (in place; `torch.float32` undoes it, up to the
    rounding). A model in bf16 this way must run under bf16 autocast."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
