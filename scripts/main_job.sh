#!/usr/bin/env bash
# The README's main job on the built-in data: train -> export (NIR) -> Lava hybrid inference -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/default}
PY=.venv/bin/python

echo "== 1/4 train a small hybrid on built-in synthetic actions ($out)"
$PY -m respike_neuro.train --config respike_neuro/configs/default.yaml --out "$out"

echo "== 2/4 export the spiking branch to NIR (BN folded, host ports) and validate it"
$PY export/to_nir.py "$out/best.pt" -o "$out/model.nir" --validate

echo "== 3/4 hybrid inference: ANN + cross-attention on the host, spiking branch in Lava (float)"
$PY sim/hybrid_demo.py "$out/best.pt" --nir "$out/model.nir" --plot "$out/hybrid_demo.png"
echo "== 4/4 the deployed model in Loihi 2 fixed point (bit-exact emulator) over the built-in test split"
$PY -m respike_neuro.evaluate "$out/best.pt" --nir "$out/model.nir" --deploy fixed --no-progress \
    --out "$out/eval_test_fixed"
echo "== done: $out (metrics.jsonl, best.pt, model.nir, hybrid_demo.png, eval_test_fixed/)"
