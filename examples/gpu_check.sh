#!/usr/bin/env bash
# GPU readiness on a machine with a CUDA GPU, in under 10 minutes, as JSON lines:
#   1. the speed bench at base shapes (BERT-base + Wav2Vec2-base configs, random weights: no download), ours and
#      the reference-shaped plain_* baselines, in fp32, bf16 and fp16;
#   2. one benchmark cell of the demo's recipe at base shapes (adapter strategy, fold 0, both corpora in order,
#      1 epoch) trained with --bf16 true on the generated sample corpus, its scores and time as one JSON line.
#
# Usage:  PYTHON=/path/to/python-with-cuda-torch bash examples/gpu_check.sh [output folder]
# PYTHON must have a CUDA build of torch; kemdy-adapters is installed into it (editable, without touching torch)
# if it is not importable there yet. Nothing here reaches a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${1:-runs/gpu_check}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_TRUST_REMOTE_CODE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1

"$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"[gpu_check] no CUDA GPU visible to this torch ({torch.__version__}); run it where there is one")
print(f"[gpu_check] {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"bf16 {torch.cuda.is_bf16_supported()}", file=sys.stderr)
EOF
if ! "$PYTHON" -c "import kemdy_adapters" 2>/dev/null; then
  echo "[gpu_check] installing kemdy-adapters into $PYTHON (editable; torch is left as it is)" >&2
  "$PYTHON" -m pip install -q --disable-pip-version-check -e . "torch==$("$PYTHON" -c 'import torch; print(torch.__version__)')"
fi

echo "[gpu_check] 1/2 speed bench, base shapes, fp32 / bf16 / fp16" >&2
"$PYTHON" -m kemdy_adapters.speed --device cuda --shapes base --batch-size 4 --warmup 2 --steps 6 \
  --precisions fp32 bf16 fp16 | tee "$OUT/bench.jsonl"

echo "[gpu_check] 2/2 one demo cell at base shapes with --bf16 true" >&2
"$PYTHON" -m kemdy_adapters.speed --device cuda --shapes base --demo-cell "$OUT/demo_cell" | tee "$OUT/demo_cell.jsonl"
