"""The analysis notebooks: committed without outputs, and each runs top to bottom on the small
built-in model (one shared tiny training, cached for the session) and writes its figures."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = {
    "spike_rates.ipynb": ["spike_rates_per_layer.png", "spike_raster.png", "spike_rates_vs_stride.png"],
    "energy.ipynb": [
        "energy_breakdown_small.png",
        "energy_breakdown_reference.png",
        "energy_vs_paper.png",
        "accuracy_energy_vs_stride.png",
    ],
    "attention.ipynb": ["attention_last.png", "attention_stage1.png"],
    "deployment.ipynb": ["lava_agreement.png", "lava_spike_rates.png", "lava_resources.png"],
}


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    assert nb.cells[0].cell_type == "markdown", f"{name} should open with markdown saying what it shows"
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [], f"{name}: code cell {i} has stale outputs"
        assert cell.get("execution_count") is None, f"{name}: code cell {i} has an execution count"


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory):
    """Fresh model cache for the session (so the tiny training really runs once here) unless the
    caller points RESPIKE_CACHE_DIR somewhere; RESPIKE_CHECKPOINT from the caller is honoured."""
    cache = os.environ.get("RESPIKE_CACHE_DIR") or str(tmp_path_factory.mktemp("nbcache"))
    env = {"RESPIKE_CACHE_DIR": cache}
    saved = {k: os.environ.get(k) for k in (*env, "RESPIKE_FIGURES")}
    os.environ.update(env)
    yield tmp_path_factory
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_writes_figures(name, notebook_env, monkeypatch):
    work = notebook_env.mktemp(name.split(".")[0])
    copy = work / name
    shutil.copy(NOTEBOOKS / name, copy)
    figures = work / "figures"
    monkeypatch.setenv("RESPIKE_FIGURES", str(figures))
    nb = nbformat.read(copy, as_version=4)
    start = time.perf_counter()
    meta = {"metadata": {"path": str(work)}}
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources=meta)
    client.execute()
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    for fig in EXPECTED[name]:
        path = figures / fig
        wrote = sorted(p.name for p in figures.glob("*"))
        assert path.is_file(), f"{name} did not write {fig} (wrote {wrote})"
        assert path.stat().st_size > 5_000, f"{fig} is only {path.stat().st_size} bytes"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{fig} is not a PNG"
    print(f"{name}: {seconds:.1f} s")
