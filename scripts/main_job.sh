#!/usr/bin/env bash
# The README's main job on the built-in data: train -> export (NIR) -> Lava hybrid inference -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/default}
PY=.venv/bin/python

echo "== 1/3 train a small hybrid on built-in synthetic actions ($out)"
$PY -m respike_neuro.train --config respike_neuro/configs/default.yaml --out "$out"
