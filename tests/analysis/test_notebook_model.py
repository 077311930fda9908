"""analysis/notebook_model.py: checkpoint loading (and re-evaluation at another stride), the
figures folder, the untrained baseline, and clear errors. The training path runs in
tests/test_notebooks.py."""

from __future__ import annotations

import pytest
import torch

from respike_neuro.analysis import notebook_model as nm
from respike_neuro.analysis.spike_rates import measure_spike_rates
from respike_neuro.checkpoint import FORMAT_VERSION, save_checkpoint
from respike_neuro.config import small
from respike_neuro.models.hybrid import build_model


@pytest.fixture
def ckpt(tmp_path):
    cfg = small(**nm.MODEL)
    torch.manual_seed(0)
    model = build_model(cfg)
    state = dict(format_version=FORMAT_VERSION, model_config=cfg.to_dict(), model=model.state_dict(), epoch=0,
                 step=0, class_names=[f"c{i}" for i in range(4)],
                 train_config={"data": {"dataset": "synthetic", "seed": 3, "options": nm.DATA["options"]}})
    return save_checkpoint(tmp_path / "m.pt", state), model


def test_checkpoint_env_is_loaded_and_reevaluated_at_other_strides(ckpt, monkeypatch):
    path, model = ckpt
    monkeypatch.setenv(nm.CHECKPOINT_ENV, str(path))
    nb = nm.notebook_model(4)
    assert nb.checkpoint == path and nb.cfg.stride == 4 and "RE-EVALUATED" not in nb.source
    assert nb.data["seed"] == 3 and nb.dataset("test", 2).num_classes == 4
    nb8 = nm.notebook_model(8)
    assert nb8.cfg.stride == 8 and "RE-EVALUATED at s=8" in nb8.source
    for k, v in model.state_dict().items():
        torch.testing.assert_close(nb8.model.state_dict()[k], v)
    x, y = nb8.clips("test", 2)
    assert x.shape == (2, 8, 3, 64, 64) and y.shape == (2,)
    assert 0.0 <= nm.evaluate_accuracy(nb8, num_clips=2) <= 1.0


def test_errors_name_the_input(tmp_path, monkeypatch):
    monkeypatch.setenv(nm.CHECKPOINT_ENV, str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="RESPIKE_CHECKPOINT"):
        nm.notebook_model(4)
    with pytest.raises(ValueError, match="stride must be >= 2"):
        nm.notebook_model(1)
    with pytest.raises(TypeError, match="stride must be an int"):
        nm.notebook_model("4")
    with pytest.raises(ValueError, match="not divisible"):
        nm.run_config_dict(3)


def test_figures_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv(nm.FIGURES_ENV, str(tmp_path / "figs"))
    assert nm.figures_dir() == tmp_path / "figs" and (tmp_path / "figs").is_dir()
    monkeypatch.delenv(nm.FIGURES_ENV)
    monkeypatch.chdir(tmp_path)
    assert nm.figures_dir().resolve() == (tmp_path / "figures").resolve()


def test_untrained_baseline_spikes_after_bn_calibration():
    cfg = small(**nm.MODEL)
    clips = torch.randn(4, cfg.frames, 3, cfg.resolution, cfg.resolution)
    model = nm.untrained_like(cfg, clips)
    assert not model.training
    rates = measure_spike_rates(model, [clips])
    assert all(0.0 < r < 1.0 for r in rates.values()), rates
