#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU and a CUDA build of torch (CI has none):
#   1. tests/test_cuda.py (neuron and model vs the CPU, AMP fp16/bf16 training, resume, export),
#      tests/test_torch_emulator.py (the fixed-point emulator on the GPU, spike for spike) and, where
#      Lava imports, the bridge tests with the host on the GPU and Lava forked on the CPU, and the
#      quantisation-aware forward (tests/test_qat.py) on the GPU;
#   2. the README's default run trained on the GPU (AMP auto = fp16 + GradScaler), timed;
#   3. training-step time and peak GPU memory at the reference size (16 x 224², ResNet-18, 64-ch SNN);
#   4. DDP (NCCL) over every GPU: one epoch of the default run under torchrun.
# The default run's weights are saved model-only as OUT/default_model.pt, to deploy on a CPU machine.
#   bash scripts/gpu_check.sh [OUT]        (PYTHON=... picks the interpreter; default .venv or python3)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
mkdir -p "$out"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
status=0

$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, '|', torch.cuda.get_device_name(), '|', torch.version.cuda)" || exit 1

echo "== 1/4 CUDA tests"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_torch_emulator.py 2>&1 \
    | tee "$out/pytest.log" || status=1
if $PY -c "import respike_neuro.bridge" 2>/dev/null; then  # the bridge's host on the GPU
    $PY -m pytest -q -p no:cacheprovider tests/test_bridge.py tests/test_qat.py \
        -k "float_lava_through_bridge or fixed_point_lava_agrees or torch_backend or host_failure or qat" \
        2>&1 | tee -a "$out/pytest.log" || status=1
else
    echo "(Lava does not import here: the bridge tests with a GPU host are skipped)"
fi

echo "== 2/4 default run on the GPU"
start=$(date +%s)
$PY -m respike_neuro.train --config respike_neuro/configs/default.yaml --out "$out/default" \
    --set train.progress=false 2>&1 | tee "$out/default_train.log" || status=1
echo "default run: $(( $(date +%s) - start )) s wall"
$PY - "$out" <<'EOF' || status=1
import json, sys, torch
from respike_neuro.checkpoint import load_checkpoint
out = sys.argv[1]
ckpt = load_checkpoint(f"{out}/default/best.pt")
keep = ("format_version", "model_config", "train_config", "model", "epoch", "step", "class_names",
        "best_metric", "best_epoch")
torch.save({k: ckpt[k] for k in keep if k in ckpt}, f"{out}/default_model.pt")
print("test:", json.dumps({k: v for k, v in json.load(open(f"{out}/default/test_results.json")).items()
                           if not isinstance(v, (list, dict))}))
EOF

echo "== 3/4 training step at the reference size (batch 8)"
bench() { $PY benchmarks/train_step.py --batch 8 --steps 5 --warmup 2 --json "$@" | tee -a "$out/train_step.jsonl"; }
: > "$out/train_step.jsonl"
bench || status=1
bench --amp --amp-dtype fp16 || status=1
bench --amp --amp-dtype bf16 || status=1
bench --amp --amp-dtype bf16 --memory-format channels_last || status=1
bench --amp --amp-dtype bf16 --checkpoint-activations || status=1
bench --per-timestep || status=1

echo "== 4/4 DDP (NCCL) over every GPU, one epoch of the default run"
gpus=$(nvidia-smi -L | wc -l)
$PY -m torch.distributed.run --standalone --nproc_per_node "$gpus" -m respike_neuro.train \
    --config respike_neuro/configs/default.yaml --out "$out/ddp" --set train.epochs=1 train.progress=false \
    2>&1 | tee "$out/ddp.log" || status=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
exit $status
