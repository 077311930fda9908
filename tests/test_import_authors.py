"""`python -m respike_neuro.import_authors`: the authors' state_dicts into project checkpoints.

tests/fixtures/authors_resnet{18,50}_keys.json list every tensor name and shape of the authors'
CrossAttenFusion (downsample network, 101 classes), as their code builds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from respike_neuro.checkpoint import CheckpointError, load_model
from respike_neuro.config import small
from respike_neuro.import_authors import _rename, convert, import_authors, main, module_map
from respike_neuro.models.hybrid import build_model

FIXTURES = Path(__file__).parent / "fixtures"


def _authors_shapes(backbone: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"authors_{backbone}_keys.json").read_text())


@pytest.mark.parametrize("backbone, tensors", [("resnet18", 352), ("resnet50", 550)])
def test_accepts_exactly_the_authors_names_and_shapes(backbone, tensors):
    shapes = _authors_shapes(backbone)
    assert len(shapes) == tensors
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    cfg, ours = convert(state, frames=16, stride=4, resolution=224)
    assert (cfg.ann, cfg.num_classes, cfg.snn_width, cfg.snn_blocks) == (backbone, 101, 64, (2, 2, 2, 2))
    assert cfg.fusion_pool == (4, 2, 1, 1) and cfg.attention and cfg.inputs == "key+res"
    assert set(ours) == set(build_model(cfg).state_dict()) and len(ours) == tensors


def _authors_file(tmp_path: Path, name: str = "hmdb51-resnet18-4-0.0001-pretrained.pth", **cfg_changes):
    """A small model of ours written the way the authors' scripts write theirs."""
    torch.manual_seed(0)
    model = build_model(small(**{"snn_width": 8, "num_classes": 5, **cfg_changes})).eval()
    inverse = {v: k for k, v in module_map(model.cfg.snn_blocks).items()}
    authors = {_rename(k, inverse): v for k, v in model.state_dict().items()}
    path = tmp_path / name
    torch.save(authors, path)
    return model, authors, path


def test_round_trip_gives_the_same_model(tmp_path, capsys):
    model, _, src = _authors_file(tmp_path)
    out = tmp_path / "ours.pt"
    assert main([str(src), "-o", str(out), "--frames", "8", "--resolution", "64"]) == 0
    assert "resnet18 + MS-ResNet width 8" in capsys.readouterr().out
    imported, ckpt = load_model(out)
    assert ckpt["model_config"]["stride"] == 4  # from the file name
    assert ckpt["train_config"]["data"] == {"dataset": "hmdb51"}
    for (name, a), b in zip(model.state_dict().items(), imported.state_dict().values()):
        assert torch.equal(a, b), name
    clip = torch.randn(1, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(imported(clip), model(clip), rtol=0, atol=0)


def test_dataparallel_prefix_and_class_names(tmp_path):
    _, authors, _ = _authors_file(tmp_path)
    src = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in authors.items()}, src)
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    ckpt = import_authors(
        src, tmp_path / "o.pt", frames=8, resolution=64, class_names=names.read_text().split()
    )
    assert ckpt["class_names"] == list("abcde") and ckpt["model_config"]["stride"] == 4


def _broken(authors: dict) -> dict[str, tuple[object, str]]:
    first = next(iter(authors))
    shape_key = "snn_backbone.layer2.0.conv1.weight"
    return {
        "not a dict": ([1, 2, 3], "holds a list"),
        "partial": ({k: v for k, v in authors.items() if k != "fc.bias"}, "missing: head.bias"),
        "mixed prefix": ({("module." + first): authors[first], **authors}, "'module.' prefix"),
        "wrong shape": ({**authors, shape_key: torch.zeros(3, 3, 3, 3)}, "mismatch: snn.stages.1.0.conv1.0"),
        "unknown key": ({**authors, "snn_backbone.x.weight": torch.zeros(1)}, "snn_backbone.x.weight"),
        "not a tensor": ({**authors, "fc.bias": [0.0]}, "not tensors"),
        "other model": ({"conv.weight": torch.zeros(1)}, "not a state_dict saved by the authors"),
    }


def test_bad_files_get_one_clear_error_and_nothing_is_written(tmp_path, capsys):
    _, authors, _ = _authors_file(tmp_path)
    out = tmp_path / "out.pt"
    for label, (content, message) in _broken(authors).items():
        src = tmp_path / f"{label.replace(' ', '_')}.pth"
        torch.save(content, src)
        assert main([str(src), "-o", str(out), "--frames", "8", "--resolution", "64"]) == 1, label
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (label, err)
        assert not out.exists() and not list(tmp_path.glob(".out.pt*")), label
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((tmp_path / "partial.pth").read_bytes()[:1000])
    assert main([str(truncated), "-o", str(out)]) == 1
    assert "not a readable torch file" in capsys.readouterr().err and not out.exists()


def test_refusals(tmp_path, capsys):
    _, _, src = _authors_file(tmp_path)
    before = src.read_bytes()
    assert main([str(src), "-o", str(src)]) == 2
    assert "is also an input" in capsys.readouterr().err and src.read_bytes() == before
    assert main([str(src), "-o", str(tmp_path / "o.pt"), "--downsample", "0"]) == 1
    assert "without --downsample" in capsys.readouterr().err
    renamed = tmp_path / "ucf101-resnet50-4-0.0001-pretrained.pth"
    renamed.write_bytes(before)
    assert main([str(renamed), "-o", str(tmp_path / "o.pt"), "--frames", "8", "--resolution", "64"]) == 1
    assert "names resnet50 but its tensors are a resnet18" in capsys.readouterr().err
    assert main([str(src), "-o", str(tmp_path / "o.pt"), "--stride", "0"]) == 2
    assert "--stride 0: must be >= 1" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pth"), "-o", str(tmp_path / "o.pt")]) == 2
    assert not (tmp_path / "o.pt").exists()


def test_other_clis_point_to_the_importer(tmp_path):
    _, _, src = _authors_file(tmp_path)
    with pytest.raises(CheckpointError, match=r"authors' ReSpike code; convert it first: python -m "
                       r"respike_neuro.import_authors"):
        load_model(src)


def test_imported_model_goes_through_export_and_fixed_point_evaluation(tmp_path, capsys):
    import importlib.util

    from respike_neuro.data.synthetic import SyntheticActions
    from respike_neuro.evaluate import main as evaluate

    _, _, src = _authors_file(tmp_path, "synthetic-resnet18-4-0.01-pretrained.pth", num_classes=12)
    names = tmp_path / "names.txt"
    synthetic = SyntheticActions(split="test", num_clips=1, frames=8, resolution=64)
    names.write_text("\n".join(synthetic.class_names))
    ckpt = tmp_path / "imported.pt"
    assert main([str(src), "-o", str(ckpt), "--frames", "8", "--resolution", "64",
                 "--class-names", str(names)]) == 0
    script = Path(__file__).parents[1] / "export" / "to_nir.py"
    spec = importlib.util.spec_from_file_location("to_nir_cli", script)
    to_nir = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(to_nir)
    graph = tmp_path / "imported.nir"
    assert to_nir.main([str(ckpt), "-o", str(graph), "--validate"]) == 0, capsys.readouterr().err
    assert "spikes identical in 16/16 LIF layers" in capsys.readouterr().out
    args = [str(ckpt), "--nir", str(graph), "--deploy", "fixed", "--calibration-clips", "2",
            "--num-clips", "4", "--batch-size", "2", "--no-progress", "--out", str(tmp_path / "ev")]
    assert evaluate(args) == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["num_clips"] == 4 and 0.0 <= res["top1_agreement_with_pytorch"] <= 1.0
