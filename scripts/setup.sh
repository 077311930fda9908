#!/usr/bin/env bash
# Build .venv from nothing (or bring it up to date). Idempotent: quick when nothing changed.
# `setup.sh dev` adds the test and lint tools (pytest, ruff, nbclient, ipykernel);
# `make run` needs none of them.
# CPU machines get torch 2.13.0+cpu from the local wheel (pip's find-links); CUDA machines get PyPI's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
stamp="$VENV/.respike-setup"
want=$(cat pyproject.toml scripts/setup.sh scripts/patch_site.py | sha256sum | cut -c1-16)
case "${1:-}" in
    dev) target=".[dev]"; ok="$want dev" ;;
    "") target="."; ok="$want" ;;
    *) echo "setup.sh: unknown argument '$1' (expected nothing or 'dev')" >&2; exit 2 ;;
esac
have=$(cat "$stamp" 2>/dev/null || true)

# up to date: same inputs, and the tools too where asked for (a dev .venv serves `make run` as well)
if { [ "$have" = "$ok" ] || [ "$have" = "$want dev" ]; } && "$VENV/bin/python" scripts/check_env.py >/dev/null 2>&1; then
    echo "setup: .venv up to date"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
quiet() { "$@" 2>&1 | grep -v -E "is ignored: it is neither|^$" || true; test "${PIPESTATUS[0]}" -eq 0; }

# uv resolves and unpacks in parallel: the whole setup took 58-65 s instead of pip's 108 s (2-core Xeon,
# cold caches). It compiles bytecode as pip does: with PYTHONDONTWRITEBYTECODE set, nothing else would.
echo "setup: uv (installer)"
quiet $PIP install -q "uv>=0.5"
UV=("$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode)
# pip's find-links (where this machine keeps its torch CPU wheel) apply to uv too
for link in $( { $PIP config get global.find-links 2>/dev/null || true; echo "${PIP_FIND_LINKS:-}"; } | tr " " "\n" | sort -u); do
    UV+=(--find-links "$link")
done
echo "setup: torch + torchvision, respike-neuro and its dependencies"
"${UV[@]}" "torch==2.13.0" "torchvision==0.28.0" -e "$target"
echo "setup: lava-nc 0.10.0 + lava-dl 0.6.0 (no-deps: their metadata predates Python 3.11)"
"${UV[@]}" --no-deps "lava-nc==0.10.0" "lava-dl==0.6.0"
"$VENV/bin/python" scripts/patch_site.py
"$VENV/bin/python" scripts/check_env.py 2>&1 | grep -v -i prophesee
echo "$ok" > "$stamp"
