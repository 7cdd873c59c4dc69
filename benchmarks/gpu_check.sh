#!/usr/bin/env bash
# The one GPU check of the speed work: the PyTorch anchor's VKD step and ours side by side
# at the paper's shapes (DenseNet-121 at 224 px, BERT-base with 256 tokens, batch 64).
#
# On a lent H100/H200 (device tool), from the repository root, carrying the anchor and the
# ml_collections wheel (both git-ignored; see docs/performance.md, "Tools", for how to make them):
#     run(command="bash benchmarks/gpu_check.sh", carry=[".anchors", ".whl"], timeout_s=600)
# Here, the same script path at a smoke size on the CPU (a minute or two):
#     bash benchmarks/gpu_check.sh --cpu-small
#
# Runs, in order (the JAX side stops starting runs at its deadline, so the last ones may be
# reported as skipped): PyTorch bf16 autocast + channels_last frozen (as published: dropout
# still on in its frozen BERT), fine-tuned and frozen_eval (its frozen BERT in eval mode, as our
# frozen step), fp32 frozen; JAX bf16 frozen, finetune, frozen_cached, image_only, fp32 frozen, then bf16 frozen
# with XLA attention (against cuDNN's) and bf16 finetune_attn0 (fine-tuning with attention
# dropout 0, where the fused attention applies in training). 3 warm-up and 10 timed steps
# each. Everything lands in $OUT: env.txt, log.txt, side_by_side.jsonl and side_by_side.txt
# (at the end), torch.jsonl and jax.jsonl (line by line, so a cut-short run still returns them).
# Budget: at most 8 minutes (the command is cut at 480 s; JAX runs stop starting at 400 s).
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
if [[ "${1:-}" == "--cpu-small" ]]; then MODE=cpu; fi
OUT=${OUT:-/tmp/vkd-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [[ $MODE == cpu && -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PY=.venv/bin/python; fi
export PYTHONUNBUFFERED=1

{
  echo "date: $(date -u +%FT%TZ)  mode: $MODE  python: $PY"
  if [[ $MODE == gpu ]]; then nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv; fi
  $PY - <<'EOF'
import importlib.metadata as md
for name in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "nvidia-cudnn-cu13", "nvidia-cudnn-cu12",
             "flax", "optax", "torch", "torchvision", "transformers", "ml_collections"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
EOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# ml_collections (the config files need it) travels as a wheel; absl-py and PyYAML are there.
if ! $PY -c 'import ml_collections' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "ml_collections missing and no wheel in .whl/ (carry it)"; exit 2; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [[ ! -f .anchors/torch_vkd_bench.py ]]; then
  echo "warning: .anchors/torch_vkd_bench.py is missing (carry .anchors): JAX side only"
fi

if [[ $MODE == gpu ]]; then
  timeout 480 $PY -m benchmarks.side_by_side --size=paper --batch=64 --warmup=3 --steps=10 --deadline_s=400 \
    --jax_runs=frozen:bfloat16,finetune:bfloat16,frozen_cached:bfloat16,image_only:bfloat16,frozen:float32,frozen:bfloat16:xla,finetune_attn0:bfloat16 \
    --out_dir="$OUT" 2>&1 | tee "$OUT/log.txt"
else
  # The same path (PyTorch first, then JAX in a subprocess) at the smoke size, on the CPU.
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true" \
  timeout 280 $PY -m benchmarks.side_by_side --size=tiny --jax_subprocess --warmup=1 --steps=2 --deadline_s=240 \
    --jax_runs=frozen:bfloat16,finetune:bfloat16,frozen_cached:bfloat16,image_only:bfloat16,frozen:float32,frozen:bfloat16:xla \
    --out_dir="$OUT" 2>&1 | tee "$OUT/log.txt"
fi
status=${PIPESTATUS[0]}
echo "side_by_side exit status: $status; files in $OUT:"
ls -l "$OUT"
exit "$status"
