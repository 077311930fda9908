import pytest
import torch

from respike_neuro.config import VARIANTS, ModelConfig, small
from respike_neuro.models.hybrid import ReSpike, branch_frames, build_model


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_ablation_variant_runs_forward_and_backward(variant):
    cfg = small(resolution=32, snn_width=8, **VARIANTS[variant])
    model = build_model(cfg)
    clip = torch.randn(2, cfg.frames, 3, 32, 32)
    per_segment = model.segment_logits(clip)
    frames_voted = {"ann": {"all": cfg.frames, "key": cfg.segments, "res": cfg.frames - cfg.segments}}
    expected_n = frames_voted.get(cfg.architecture, {}).get(cfg.inputs, cfg.segments)
    if cfg.architecture == "snn" and cfg.inputs == "key":
        expected_n = 1  # the key frames form one sequence of T/s timesteps
    assert per_segment.shape == (2, expected_n, cfg.num_classes)
    logits = model(clip)
    assert logits.shape == (2, cfg.num_classes)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter takes part in the forward pass"


def test_branch_inputs_follow_the_paper():
    clip = torch.randn(1, 8, 3, 4, 4)
    assert branch_frames(clip, 4, "key+res", "ann").shape == (1, 2, 1, 3, 4, 4)
    assert branch_frames(clip, 4, "key+res", "snn").shape == (1, 2, 3, 3, 4, 4)
    assert branch_frames(clip, 4, "all", "snn").shape == (1, 2, 4, 3, 4, 4)
    assert branch_frames(clip, 4, "key", "snn").shape == (1, 1, 2, 3, 4, 4)
    torch.testing.assert_close(branch_frames(clip, 4, "key", "snn")[0, 0, 1], clip[0, 4])


def test_reference_configuration_is_the_authors_network():
    model = ReSpike(ModelConfig())
    assert n_params(model.ann) == 11_176_512  # torchvision ResNet-18 without fc
    # MS-ResNet-18, width 64: stem conv+BN, 8 blocks (2 convs + 2 BN), 4 downsample shortcuts
    c = [64, 128, 256, 512]
    snn = 3 * 64 * 9 + 2 * 64
    c_in = 64
    for c_out in c:
        snn += c_in * c_out * 9 + c_out * c_out * 9 + 4 * c_out + c_in * c_out + 2 * c_out  # block 0
        snn += 2 * c_out * c_out * 9 + 4 * c_out  # block 1
        c_in = c_out
    assert n_params(model.snn) == snn
    fusion = 0
    for ch, ctx in zip(c, [64, 128, 256, 512]):
        fusion += 2 * ch + (ch * ch + ch)  # GroupNorm, proj_in
        fusion += 3 * 2 * ch  # three LayerNorms
        fusion += 3 * ch * ch + ch * ch + ch  # self-attention q, k, v, out
        fusion += ch * ch + 2 * ctx * ch + ch * ch + ch  # cross-attention
        fusion += ch * 8 * ch + 8 * ch + 4 * ch * ch + ch  # GEGLU feed-forward
        fusion += ch * ch + ch  # proj_out
    assert n_params(model.fusions) == fusion
    assert n_params(model.head) == (512 + 512) * 101 + 101
    assert [f.pool for f in model.fusions] == [4, 2, 1, 1]
    assert [len(s) for s in model.snn.stages] == [2, 2, 2, 2]


def test_reference_shapes_per_stage():
    model = ReSpike(ModelConfig(snn_width=8, ann="resnet18")).eval()
    clip = torch.zeros(1, 16, 3, 224, 224)
    seen = {}

    def remember(k):
        def hook(module, inputs, output):
            seen[k] = tuple(output.shape)

        return hook

    for k, stage in enumerate(model.snn.stages):
        stage[-1].register_forward_hook(remember(k))
    with torch.no_grad():
        model(clip)
    # (T = s-1 timesteps, B * T/s segments, C, H, W): 56/28/14/7 like the ANN stages
    assert seen == {0: (3, 4, 8, 56, 56), 1: (3, 4, 16, 28, 28), 2: (3, 4, 32, 14, 14), 3: (3, 4, 64, 7, 7)}


def test_fusion_starts_as_pooled_identity():
    model = build_model(small(resolution=64, snn_width=16)).eval()
    x = torch.randn(3, 16, 16, 16)
    ctx = torch.randn(3, 64, 16, 16)
    fused = model.fuse(0, x, ctx)  # pool 2, zero-initialised proj_out: upsample(avgpool(x))
    expected = torch.nn.functional.interpolate(
        torch.nn.functional.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(fused, expected)


def test_snntorch_backend_gives_the_same_logits():
    torch.manual_seed(0)
    fused = build_model(small(resolution=32, snn_width=8)).eval()
    reference = build_model(small(resolution=32, snn_width=8, lif_backend="snntorch")).eval()
    reference.load_state_dict(fused.state_dict())
    clip = torch.randn(2, 8, 3, 32, 32) * 3
    with torch.no_grad():
        torch.testing.assert_close(fused(clip), reference(clip))


@pytest.mark.parametrize(
    "shape,match",
    [((2, 8, 3, 32), r"\(B, T, 3, H, W\)"), ((2, 6, 3, 32, 32), "not divisible"), ((1, 8, 3, 40, 40), "32")],
)
def test_bad_clip_shapes(shape, match):
    model = build_model(small(resolution=32, snn_width=8))
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape))


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(ann="resnet19"), "resnet19"),
        (dict(stride=3), "not divisible by stride"),
        (dict(stride=0), "stride"),
        (dict(architecture="cnn"), "architecture"),
        (dict(architecture="snn", inputs="key+res"), "key\\+res"),
        (dict(resolution=50), "multiple of 32"),
        (dict(head_ann_scale=0.0), "head_ann_scale must be > 0"),
        (dict(head_ann_scale=float("inf")), "head_ann_scale must be a finite number"),
    ],
)
def test_bad_config(changes, match):
    with pytest.raises(ValueError, match=match):
        build_model(small(**changes))


def test_unknown_config_key_is_named():
    with pytest.raises(KeyError, match="snn_depth"):
        ModelConfig.from_dict({"snn_depth": 3}, source="my.yaml")


def test_imagenet_weights_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        build_model(small(ann_weights="imagenet"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(small(ann_weights=str(tmp_path / "missing.pth")))


def test_imagenet_weights_load_from_a_local_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(small(ann_weights=str(path)))
    torch.testing.assert_close(model.ann.stem[0].weight, reference.conv1.weight)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit resnet18"):
        build_model(small(ann_weights=str(path)))


def test_activation_checkpointing_changes_nothing_but_memory():
    torch.manual_seed(0)
    plain = build_model(small(resolution=32, snn_width=8)).train()
    recomputed = build_model(small(resolution=32, snn_width=8)).train()
    recomputed.load_state_dict(plain.state_dict())
    recomputed.checkpoint_activations = True
    clip = torch.randn(2, 8, 3, 32, 32) * 2
    for model in (plain, recomputed):
        model(clip).logsumexp(-1).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    # BatchNorm statistics are updated once, not once more during the recomputation
    for (name, a), b in zip(plain.named_buffers(), recomputed.buffers()):
        torch.testing.assert_close(a, b, msg=name)


def test_head_ann_scale_folds_into_the_head_and_scales_its_ann_columns_learning():
    """model.head_ann_scale s multiplies the pooled ANN features at the head. The same network with
    s = 1 and the head's ANN columns times s (W_eff = s W) gives the same logits, and the gradient of
    those columns is s times the folded network's, so SGD moves W_eff by s^2 times as much."""
    torch.manual_seed(0)
    s = 0.25
    scaled = build_model(small(resolution=32, snn_width=8, head_ann_scale=s))
    plain = build_model(small(resolution=32, snn_width=8))
    plain.load_state_dict(scaled.state_dict())
    n_ann = scaled.ann.channels[-1]
    with torch.no_grad():
        plain.head.weight[:, :n_ann] *= s
    clip, label = torch.randn(2, 8, 3, 32, 32) * 3, torch.tensor([1, 5])
    for model in (scaled, plain):
        model.train()
        torch.nn.functional.cross_entropy(model(clip), label).backward()
    torch.testing.assert_close(scaled.head.weight.grad[:, :n_ann], s * plain.head.weight.grad[:, :n_ann])
    torch.testing.assert_close(scaled.head.weight.grad[:, n_ann:], plain.head.weight.grad[:, n_ann:])
    scaled.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(scaled(clip), plain(clip))
        plain.load_state_dict(scaled.state_dict())  # the same weights without the scale: another network
        assert not torch.allclose(plain(clip), scaled(clip))
