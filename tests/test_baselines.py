"""The baseline warpers (none, affine_stn, plain_flow, nonlocal_attn) against the Warper contract.

Shapes at every scale with one and two sources, gradients, identity behaviour, option errors, an
exact reference for the attention, and small optimisation problems each warper must be able to solve.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.config import ConfigError, ModelConfig
from bench.registry import WARPERS
from bench.warp import ScaleSpec, WarpInputs, WarpSetup, blend

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("none", "affine_stn", "plain_flow", "nonlocal_attn")


INSTALLED = importlib.util.find_spec("bench.baselines") is not None


def _import_baseline(name: str):
    """``bench.baselines.<name>``; before ``pip install -e .`` the repo's baselines/ is mapped there."""
    if not INSTALLED and "bench.baselines" not in sys.modules:
        folder = ROOT / "baselines"
        spec = importlib.util.spec_from_file_location(
            "bench.baselines", folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["bench.baselines"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"bench.baselines.{name}")


def warper_class(name: str):
    """The warper registered as ``name``: loaded through its entry point once the project is installed."""
    if not INSTALLED:
        _import_baseline(name)
    return WARPERS.get(name)


TINY_MODEL = ModelConfig(
    ngf=8, img_f=16, flow_ngf=8, flow_img_f=16, flow_layers=4, attn_layers=[2, 3], kernel_sizes={2: 5, 3: 3}
)


def make_setup(num_sources: int = 1, options: dict | None = None, size: int = 32) -> WarpSetup:
    """Two scales, coarse -> fine, as the generator would build them for a ``size`` x ``size`` image."""
    return WarpSetup(
        scales=(
            ScaleSpec(layer=3, channels=16, kernel_size=3, height=size // 8, width=size // 8),
            ScaleSpec(layer=2, channels=8, kernel_size=5, height=size // 4, width=size // 4),
        ),
        num_sources=num_sources,
        image_channels=3,
        structure_channels=5,
        image_size=(size, size),
        model=TINY_MODEL,
        options=options or {},
    )


def make_inputs(setup: WarpSetup, batch: int = 2) -> WarpInputs:
    h, w = setup.image_size
    structure = (batch, setup.structure_channels, h, w)
    return WarpInputs(
        source_images=[torch.rand(batch, 3, h, w) * 2 - 1 for _ in range(setup.num_sources)],
        source_structures=[torch.rand(structure) for _ in range(setup.num_sources)],
        target_structure=torch.rand(structure),
    )


def scale_features(setup: WarpSetup, scale: int, batch: int = 2) -> tuple[list[torch.Tensor], torch.Tensor]:
    spec = setup.scales[scale]
    shape = (batch, spec.channels, spec.height, spec.width)
    return [torch.randn(shape) for _ in range(setup.num_sources)], torch.randn(shape)


def run_generator_like(warper, setup: WarpSetup, batch: int = 2):
    """Call the warper the way the generator does: plan once, then warp and blend at each scale."""
    plan = warper.plan(make_inputs(setup, batch))
    outputs = []
    for scale in range(len(setup.scales)):
        sources, target = scale_features(setup, scale, batch)
        result = warper.warp(scale, sources, target, plan)
        outputs.append((target, result, blend(target, result)))
    return plan, outputs


def smooth_texture(size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A (1, C, size, size) random texture, Gaussian-blurred so gradients reach a few pixels."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, channels, size, size, generator=generator)
    radius = 6
    taps = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * 2.0**2))
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2).expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(noise, [radius] * 4, mode="circular"), kernel, groups=channels) * 4


# -------------------------------------------------------------------------------------------------
# Contract: registration, shapes, masks, gradients
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_name_from_its_module(name):
    cls = warper_class(name)
    if INSTALLED:
        (entry_point,) = importlib.metadata.entry_points(group="warpbench.warpers", name=name)
        assert entry_point.value == f"bench.baselines.{name}"
    assert WARPERS.origin(name) == f"bench.baselines.{name}"
    assert cls.uses_flow == (name == "plain_flow")
    assert cls.two_stage == (name == "plain_flow")


@pytest.mark.parametrize("num_sources", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_at_every_scale(name, num_sources):
    torch.manual_seed(0)
    setup = make_setup(num_sources)
    warper = warper_class(name)(setup)
    plan, outputs = run_generator_like(warper, setup)
    for scale, (target, result, blended) in enumerate(outputs):
        assert blended.shape == target.shape
        if name == "none":
            assert result is None
            continue
        assert len(result.features) == len(result.masks) == num_sources
        for features, mask in zip(result.features, result.masks):
            assert features.shape == target.shape
            assert mask.shape == (target.shape[0], 1, *target.shape[2:])
            assert 0 <= mask.min() and mask.max() <= 1
        assert [m.shape for m in plan["masks"][scale]] == [m.shape for m in result.masks]
    if name == "plain_flow":
        for scale, spec in enumerate(setup.scales):
            assert [f.shape for f in plan["flows"][scale]] == [(2, 2, spec.height, spec.width)] * num_sources
    if name == "affine_stn":
        theta_shapes = [[t.shape for t in per_scale] for per_scale in plan["thetas"]]
        assert theta_shapes == [[(2, 2, 3)] * num_sources] * 2


@pytest.mark.parametrize("name", [n for n in NAMES if n != "none"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    setup = make_setup(2)
    warper = warper_class(name)(setup)
    if name == "affine_stn":  # the zero-initialised head blocks the encoder's gradient at init only
        torch.nn.init.normal_(warper.theta_head.weight, std=1e-2)
    _, outputs = run_generator_like(warper, setup)
    loss = sum((blended * torch.randn_like(blended)).sum() for _, _, blended in outputs)
    loss.backward()
    for param_name, param in warper.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


def test_none_leaves_the_decoder_state_untouched():
    setup = make_setup(2)
    warper = warper_class("none")(setup)
    assert list(warper.parameters()) == []
    _, outputs = run_generator_like(warper, setup)
    for target, result, blended in outputs:
        assert result is None and torch.equal(blended, target)


# -------------------------------------------------------------------------------------------------
# Options
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_is_an_error_naming_the_key(name):
    cls = warper_class(name)
    with pytest.raises(ConfigError, match=rf"model\.methods\.{name}: unknown option\(s\) hiden"):
        cls(make_setup(options={"hiden": 4}))


@pytest.mark.parametrize(("name", "key"), [("affine_stn", "hidden"), ("nonlocal_attn", "heads")])
@pytest.mark.parametrize("value", [0, 2.5, "8", True])
def test_option_must_be_a_positive_integer(name, key, value):
    with pytest.raises(ConfigError, match=rf"model\.methods\.{name}\.{key}: expected a positive integer"):
        warper_class(name)(make_setup(options={key: value}))


def test_options_size_the_networks():
    stn = warper_class("affine_stn")(make_setup(options={"hidden": 12, "layers": 2, "mask_hidden": 5}))
    assert [m.out_channels for m in stn.encoder if isinstance(m, torch.nn.Conv2d)] == [12, 12]
    assert stn.occlusion.heads[0][0].out_channels == 5
    attn = warper_class("nonlocal_attn")(make_setup(options={"heads": 2, "key_dim": 3}))
    assert [a.query.out_channels for a in attn.attention] == [6, 6]
    default = warper_class("nonlocal_attn")(make_setup())
    assert [a.query.out_channels for a in default.attention] == [16, 8]  # heads * (channels // heads)


def test_affine_stn_rejects_more_halvings_than_the_image_allows():
    with pytest.raises(ValueError, match=r"layers=6 .* use at most 5"):
        warper_class("affine_stn")(make_setup(options={"layers": 6}))


# -------------------------------------------------------------------------------------------------
# Identity behaviour and exact references
# -------------------------------------------------------------------------------------------------
def test_affine_stn_is_the_identity_at_init():
    torch.manual_seed(0)
    setup = make_setup(2)
    warper = warper_class("affine_stn")(setup)
    plan, _ = run_generator_like(warper, setup)
    identity = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    for per_scale in plan["thetas"]:
        for theta in per_scale:
            assert torch.equal(theta, identity.expand_as(theta))
    sources, target = scale_features(setup, 1)
    result = warper.warp(1, sources, target, plan)
    for warped, source in zip(result.features, sources):
        torch.testing.assert_close(warped, source, atol=1e-5, rtol=0)


def test_affine_warp_translation_moves_whole_pixels():
    affine_warp = _import_baseline("affine_stn").affine_warp
    features = torch.randn(1, 2, 8, 10)
    theta = torch.tensor([[[1.0, 0, 2 * 3 / 10], [0, 1, -2 * 1 / 8]]])  # 3 px right, 1 px up in sampling
    warped = affine_warp(features, theta)
    # output (y, x) samples the input at (y - 1, x + 3); compare where that point lies inside
    torch.testing.assert_close(warped[..., 1:, :7], features[..., :7, 3:], atol=1e-5, rtol=0)


def test_plain_flow_with_zero_flow_returns_the_source_features():
    setup = make_setup(2)
    warper = warper_class("plain_flow")(setup)
    sources, target = scale_features(setup, 0)
    masks = [torch.rand(2, 1, 4, 4) for _ in sources]
    plan = {"flows": [[torch.zeros(2, 2, 4, 4)] * 2, []], "masks": [masks, []]}
    result = warper.warp(0, sources, target, plan)
    for warped, source in zip(result.features, sources):
        torch.testing.assert_close(warped, source, atol=1e-6, rtol=0)
    assert all(a is b for a, b in zip(result.masks, masks))


def test_cross_attention_matches_explicit_softmax_attention():
    module = _import_baseline("nonlocal_attn").CrossAttention2d(channels=6, heads=2, key_dim=3)
    target, source = torch.randn(2, 6, 4, 5), torch.randn(2, 6, 3, 3)
    q = module.query(target).flatten(2).view(2, 2, 3, 20)  # (B, heads, key_dim, Nq)
    k = module.key(source).flatten(2).view(2, 2, 3, 9)
    v = module.value(source).flatten(2).view(2, 2, 3, 9)
    weights = torch.softmax(torch.einsum("bhdq,bhdk->bhqk", q, k) / math.sqrt(3), dim=-1)
    attended = torch.einsum("bhqk,bhdk->bhdq", weights, v).reshape(2, 6, 4, 5)
    torch.testing.assert_close(module(target, source), module.out(attended), atol=1e-5, rtol=1e-5)


def test_cross_attention_runs_on_the_fused_flash_kernel():
    """The (H*W)^2 attention matrix is never held: SDPA restricted to flash attention must accept the
    projected queries/keys/values (equal head dims, contiguous last dim), forward and backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    module = _import_baseline("nonlocal_attn").CrossAttention2d(channels=16, heads=2, key_dim=8)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        module(torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)).sum().backward()


# -------------------------------------------------------------------------------------------------
# Small optimisation problems
# -------------------------------------------------------------------------------------------------
def test_affine_stn_recovers_a_known_affine():
    torch.manual_seed(0)
    stn_module = _import_baseline("affine_stn")
    size = 32
    setup = WarpSetup(
        scales=(ScaleSpec(layer=0, channels=3, kernel_size=3, height=size, width=size),),
        num_sources=1, image_channels=3, structure_channels=2, image_size=(size, size),
    )
    warper = stn_module.AffineSTN(setup)
    image = smooth_texture(size)
    cos, sin = math.cos(math.radians(8)), math.sin(math.radians(8))
    truth = torch.tensor([[[cos, -sin, 0.10], [sin, cos, -0.06]]])  # 8 degrees, then a shift
    wanted = stn_module.affine_warp(image, truth)
    inputs = WarpInputs([image], [torch.rand(1, 2, size, size)], torch.rand(1, 2, size, size))
    params = list(warper.encoder.parameters()) + list(warper.theta_head.parameters())
    optimiser = torch.optim.Adam(params, lr=5e-3)
    for _ in range(200):
        plan = warper.plan(inputs)
        warped = warper.warp(0, [image], torch.zeros_like(image), plan).features[0]
        loss = F.mse_loss(warped, wanted)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    theta = warper.plan(inputs)["thetas"][0][0].detach()
    assert (theta - truth).abs().max() < 0.01, theta


def test_plain_flow_learns_a_known_translation():
    torch.manual_seed(0)
    warper = warper_class("plain_flow")(make_setup(1))
    size = 24
    image = smooth_texture(size)
    # target(y, x) = source(y + 1, x + 2): a backward flow of (2, 1) pixels
    wanted = image[..., 1:, 2:]
    shift = torch.zeros(1, 2, 1, 1, requires_grad=True)  # a uniform flow field
    optimiser = torch.optim.Adam([shift], lr=0.05)
    for _ in range(150):
        plan = {"flows": [[shift.expand(1, 2, size, size)]], "masks": [[torch.ones(1, 1, size, size)]]}
        warped = warper.warp(0, [image], torch.zeros_like(image), plan).features[0]
        loss = F.mse_loss(warped[..., : size - 1, : size - 2], wanted)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.testing.assert_close(shift.detach().flatten(), torch.tensor([2.0, 1.0]), atol=0.02, rtol=0)


def test_nonlocal_attention_learns_to_copy_a_permuted_feature_map():
    torch.manual_seed(0)
    setup = WarpSetup(
        scales=(ScaleSpec(layer=0, channels=8, kernel_size=3, height=6, width=6),),
        num_sources=1, image_channels=3, structure_channels=2, image_size=(6, 6),
        options={"heads": 2, "key_dim": 4, "mask_hidden": 4},
    )
    warper = warper_class("nonlocal_attn")(setup)
    source = torch.randn(1, 8, 6, 6)
    target = source.flatten(2)[..., torch.randperm(36)].view(1, 8, 6, 6)
    optimiser = torch.optim.Adam(warper.attention.parameters(), lr=2e-2)

    def error() -> torch.Tensor:
        return F.mse_loss(warper.warp(0, [source], target, warper.plan(None)).features[0], target)

    initial = error().item()
    for _ in range(300):
        loss = error()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert error().item() < 0.1 * initial


@pytest.mark.parametrize("num_sources", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_runs_inside_the_generator(name, num_sources):
    """End to end through the shared backbone, sized from a task config as the runner does."""
    from bench.config import TaskConfig
    from bench.models.generator import build_generator

    _import_baseline(name)
    torch.manual_seed(0)
    cfg = TaskConfig(model=TINY_MODEL)
    cfg.dataset.resolution = [32, 32]
    generator = build_generator(cfg, name, num_sources=num_sources, structure_channels=5)
    inputs = make_inputs(generator.warper.setup)
    image, plan = generator(inputs)
    assert image.shape == (2, 3, 32, 32)
    image.square().mean().backward()
    if name != "none":
        assert all(p.grad is not None for p in generator.warper.parameters())
        assert [len(masks) for masks in plan["masks"]] == [num_sources, num_sources]


def test_one_seed_gives_every_method_the_same_backbone_and_discriminator_init():
    """The comparison is paired: under one seed only the warper's weights differ between methods."""
    from bench.config import TaskConfig
    from bench.models.discriminator import ResDiscriminator
    from bench.models.generator import build_generator

    cfg = TaskConfig(model=TINY_MODEL)
    cfg.dataset.resolution = [32, 32]
    built = {}
    for name in ("gfla", *NAMES):
        if name != "gfla":
            _import_baseline(name)
        torch.manual_seed(3)
        generator = build_generator(cfg, name, num_sources=1, structure_channels=5)
        backbone = {k: v for k, v in generator.state_dict().items() if not k.startswith("warper.")}
        built[name] = (backbone, ResDiscriminator(cfg.model).state_dict())
    reference_backbone, reference_discriminator = built["none"]
    for name, (backbone, discriminator) in built.items():
        assert backbone.keys() == reference_backbone.keys()
        assert all(torch.equal(backbone[k], reference_backbone[k]) for k in backbone), name
        assert all(torch.equal(discriminator[k], reference_discriminator[k]) for k in discriminator), name
    # a different seed changes the backbone
    torch.manual_seed(4)
    other = build_generator(cfg, "none", num_sources=1, structure_channels=5).state_dict()
    assert not all(torch.equal(other[k], reference_backbone[k]) for k in reference_backbone)
