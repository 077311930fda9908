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

# gperftools' tcmalloc: training on an x86-64 CPU runs on it where the system has it (train.allocator
# auto; a lower peak and faster steps than glibc's malloc, README). A system library, not a Python
# package: installed here where setup runs as root with apt (a container, CI) unless RESPIKE_NO_APT is
# set; elsewhere one line says how, and training uses glibc's malloc.
has_tcmalloc() {  # on the loader's path, where respike_neuro.allocator.tcmalloc_library looks last
    "$PYTHON" -c "import ctypes.util as u; raise SystemExit(not any(map(u.find_library, ['tcmalloc_minimal', 'tcmalloc'])))"
}
if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && ! has_tcmalloc; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${RESPIKE_NO_APT:-}" ]; then
        echo "setup: tcmalloc for CPU training (apt: libtcmalloc-minimal4)"
        apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; }
        apt_install || { apt-get update -q >/dev/null 2>&1 && apt_install; } \
            || echo "setup: apt could not install libtcmalloc-minimal4; training uses glibc's malloc"
    else
        echo "setup: tcmalloc not found; CPU training uses glibc's malloc (for a lower peak and faster" \
            "steps: sudo apt install libtcmalloc-minimal4, or conda install gperftools)"
    fi
fi

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
