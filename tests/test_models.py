"""GFLA networks: shapes at every scale, gradient flow, initial flows/masks, VGG weights handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config import TaskConfig
from bench.data.shapenet import VIEW_CODE_CHANNELS, view_structure
from bench.models.discriminator import ResDiscriminator
from bench.models.flow_net import FlowEstimator
from bench.models.generator import CodeDecoder, build_generator, make_warp_setup
from bench.models.official import OfficialCheckpointError, convert_generator, load_generator
from bench.models.vgg import WEIGHTS_FILE, VGGFeatures
from bench.taskspec import load_task
from bench.warp import WarpInputs
from gfla_tiny import SIZE, STRUCTURE_CHANNELS, tiny_config


def inputs(num_sources: int, batch: int = 2, seed: int = 0) -> WarpInputs:
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(batch, 3, SIZE, SIZE, generator=generator) * 2 - 1 for _ in range(num_sources)]
    structures = [torch.rand(batch, STRUCTURE_CHANNELS, SIZE, SIZE, generator=generator) for _ in range(num_sources)]
    return WarpInputs(images, structures, torch.rand(batch, STRUCTURE_CHANNELS, SIZE, SIZE, generator=generator))


def test_warp_setup_follows_gfla_fashion_defaults():
    cfg = TaskConfig()
    cfg.dataset.resolution = [256, 256]
    setup = make_warp_setup(cfg, num_sources=1, structure_channels=18)
    scales = [(s.layer, s.channels, s.kernel_size, s.height, s.width) for s in setup.scales]
    assert scales == [(3, 256, 3, 32, 32), (2, 128, 5, 64, 64)]  # ExtractorAttn(256, k3) @32, (128, k5) @64


def test_warp_setup_names_a_missing_kernel_size():
    cfg = tiny_config()
    cfg.model.kernel_sizes = {3: 3}
    with pytest.raises(ValueError, match="kernel_sizes has no entry for attention layer 2"):
        make_warp_setup(cfg, 1, STRUCTURE_CHANNELS)


@pytest.mark.parametrize("num_sources", [1, 2])
def test_generator_shapes_at_every_scale(num_sources):
    cfg = tiny_config()
    torch.manual_seed(0)
    generator = build_generator(cfg, "gfla", num_sources, STRUCTURE_CHANNELS)
    image, plan = generator(inputs(num_sources))
    assert image.shape == (2, 3, SIZE, SIZE)
    assert image.abs().max() <= 1
    assert [len(scale) for scale in plan["flows"]] == [num_sources, num_sources]
    for spec, flows, masks in zip(generator.warper.setup.scales, plan["flows"], plan["masks"]):
        for flow, mask in zip(flows, masks):
            assert flow.shape == (2, 2, spec.height, spec.width)
            assert mask.shape == (2, 1, spec.height, spec.width)
    # input channels: one source = image + source + target structure (the original's 3 + 18 + 18)
    first_conv = generator.warper.flow_estimator.block0.model[2]
    assert first_conv.in_channels == num_sources * (3 + STRUCTURE_CHANNELS) + STRUCTURE_CHANNELS


def test_flow_estimator_keeps_the_original_input_order_for_one_source():
    cfg = tiny_config()
    setup = make_warp_setup(cfg, 1, STRUCTURE_CHANNELS)
    data = inputs(1)
    stacked = FlowEstimator(setup).assemble(data)
    expected = torch.cat([data.source_images[0], data.source_structures[0], data.target_structure], 1)
    assert torch.equal(stacked, expected)
    two = make_warp_setup(cfg, 2, STRUCTURE_CHANNELS)
    data2 = inputs(2)
    stacked2 = FlowEstimator(two).assemble(data2)
    order = [data2.target_structure, data2.source_images[0], data2.source_structures[0],
             data2.source_images[1], data2.source_structures[1]]  # BP_t, P_prev, BP_prev, P_ref, BP_ref
    assert torch.equal(stacked2, torch.cat(order, 1))


def test_gradients_reach_every_parameter():
    cfg = tiny_config()
    torch.manual_seed(0)
    generator = build_generator(cfg, "gfla", 1, STRUCTURE_CHANNELS)
    image, plan = generator(inputs(1))
    loss = image.square().mean() + sum(f.square().mean() for scale in plan["flows"] for f in scale)
    loss.backward()
    dead = [name for name, p in generator.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    discriminator = ResDiscriminator(cfg.model)
    discriminator(image.detach()).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in discriminator.parameters())


def test_initial_flows_are_near_zero_and_masks_near_half():
    cfg = tiny_config()
    torch.manual_seed(0)
    generator = build_generator(cfg, "gfla", 1, STRUCTURE_CHANNELS)
    _, plan = generator(inputs(1))
    for flows, masks in zip(plan["flows"], plan["masks"]):
        assert flows[0].abs().max() < 0.01
        assert (masks[0] - 0.5).abs().max() < 0.01
    # gain 0.02 orthogonal init: the flow head's weight rows have norm 0.02, biases are zero
    head = generator.warper.flow_estimator.output0
    assert torch.allclose(head.weight.flatten(1).norm(dim=1), torch.full((2,), 0.02), atol=1e-6)
    assert torch.count_nonzero(head.bias) == 0


def test_parameter_names_follow_the_checkpoint_mapping():
    cfg = tiny_config()
    names = set(dict(build_generator(cfg, "gfla", 1, STRUCTURE_CHANNELS).named_parameters()))
    for expected in ["sources.0.block0.model.2.weight", "target_encoder.encoder1.model.5.weight",
                     "decoder0.1.shortcut.weight", "outconv.model.2.weight",
                     "warper.flow_estimator.jump0.model.2.weight", "warper.flow_estimator.mask1.0.weight",
                     "warper.attention.0.0.fully_connect_layer.0.weight"]:
        assert expected in names


def view_inputs(size: int, source_view: int, target_view: int, shift: float = 0.0) -> WarpInputs:
    """One fixed source image seen from azimuth bin ``source_view``, target ``target_view`` (elevation 0),
    both codes tiled over the map as the dataset writes them; ``shift`` is added to both codes."""
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    source = view_structure(2 * source_view, 0, (size, size)).unsqueeze(0) + shift
    target = view_structure(2 * target_view, 0, (size, size)).unsqueeze(0) + shift
    return WarpInputs([image], [source], target)


@pytest.mark.parametrize("method", ["gfla", "plain_flow", "affine_stn", "nonlocal_attn", "none"])
def test_view_synthesis_output_depends_on_the_target_view(method):
    """The view code is spatially constant: through an encoder that starts with InstanceNorm it would
    reach the generator as nothing but the norm's bias, and every target view would give one image."""
    cfg = load_task("view_synthetic_chair", "smoke")
    torch.manual_seed(0)
    generator = build_generator(cfg, method, 1, VIEW_CODE_CHANNELS).eval()
    size = cfg.dataset.resolution[0]
    with torch.no_grad():
        images = [generator(view_inputs(size, 0, target))[0] for target in (1, 5, 9)]
    assert isinstance(generator.target_encoder, CodeDecoder)
    assert (images[0] - images[1]).abs().max() > 1e-5 and (images[0] - images[2]).abs().max() > 1e-5


def test_view_synthesis_flows_see_only_the_source_image_and_the_code_difference():
    """As the original's ShapeNetFlowNet: the flows change with the target view, but adding the same
    constant to both codes changes nothing (the estimator reads the difference source - target)."""
    cfg = load_task("view_synthetic_chair", "smoke")
    torch.manual_seed(0)
    estimator = build_generator(cfg, "gfla", 1, VIEW_CODE_CHANNELS).warper.flow_estimator.eval()
    size = cfg.dataset.resolution[0]
    with torch.no_grad():
        flows = [estimator(view_inputs(size, 0, target, shift))[0][-1][0] for target, shift in
                 [(3, 0.0), (3, 0.5), (7, 0.0)]]
    assert torch.allclose(flows[0], flows[1], atol=1e-6)
    assert (flows[0] - flows[2]).abs().max() > 1e-6
    assert estimator.block0.model[2].in_channels == 3  # the encoder reads the source image alone


def test_view_synthesis_resolution_too_small_for_the_tiled_code_is_a_clear_error():
    cfg = load_task("view_synthetic_chair", "smoke", ["model.layers=3", "model.attn_layers=[2,3]"])
    rule = r"32x32 must be a multiple of 2\*\*\(model\.layers \+ 2\), and at least twice that, for the code structure"
    with pytest.raises(ValueError, match=rule):
        make_warp_setup(cfg, 1, VIEW_CODE_CHANNELS)


def test_discriminator_patch_map_size():
    cfg = TaskConfig()  # ndf 32, 4 layers: 256 -> 16
    assert ResDiscriminator(cfg.model)(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 16, 16)


def test_vgg_imagenet_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE) as info:
        VGGFeatures("imagenet")
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)


def test_vgg_imagenet_loads_the_official_file_name(tmp_path, monkeypatch):
    reference = VGGFeatures("random")
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(1.0)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in reference.features.state_dict().items()}, folder / WEIGHTS_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    loaded = VGGFeatures("imagenet")
    for a, b in zip(loaded.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.describe()["source"] == str(folder / WEIGHTS_FILE)


def test_vgg_random_is_reproducible_and_returns_named_layers():
    a, b = VGGFeatures("random"), VGGFeatures("random")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    out = a(torch.zeros(1, 3, SIZE, SIZE), ["relu3_1", "relu4_1", "relu5_2"])
    assert out["relu3_1"].shape == (1, 256, SIZE // 4, SIZE // 4)
    assert out["relu4_1"].shape == (1, 512, SIZE // 8, SIZE // 8)
    assert out["relu5_2"].shape == (1, 512, SIZE // 16, SIZE // 16)
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        a(torch.zeros(1, 3, SIZE, SIZE), ["relu9_9"])


def test_instance_norm_hides_the_source_colours_and_batch_norm_does_not():
    """GFLA's encoders start with InstanceNorm on the raw image (pre-activation), so a per-channel
    positive affine change of the source's colours reaches no layer: the generated image depends on
    each channel's standardised pattern only.  A batch-statistics norm keeps the colours visible."""
    data = inputs(1)
    image = data.source_images[0]
    scale, offset = torch.tensor([0.5, 0.8, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, -0.3, 0.4]).view(1, 3, 1, 1)
    recoloured = WarpInputs([image * scale + offset], data.source_structures, data.target_structure)
    other = WarpInputs([torch.flip(image, dims=[3])], data.source_structures, data.target_structure)
    changes = {}
    for norm in ("instance", "batch"):
        cfg = tiny_config()
        cfg.model.norm = norm
        torch.manual_seed(0)
        generator = build_generator(cfg, "gfla", 1, STRUCTURE_CHANNELS)
        with torch.no_grad():
            for parameter in generator.parameters():  # away from the near-silent init (gain 0.02)
                parameter.add_(0.05 * torch.randn_like(parameter))
            for seed in range(1, 30):  # batch norm: running statistics of such inputs
                generator(inputs(1, batch=4, seed=seed))
            generator.eval()
            out = generator(data)[0]
            changes[norm] = (
                (generator(recoloured)[0] - out).abs().max(),
                (generator(other)[0] - out).abs().max(),
            )
    recolour_instance, other_instance = changes["instance"]
    assert other_instance > 1e-3  # the source matters ...
    assert recolour_instance < other_instance * 1e-2  # ... but not its colours
    recolour_batch, other_batch = changes["batch"]
    assert recolour_batch > other_batch * 0.1


FIXTURES = Path(__file__).parent / "fixtures"


def official_state(name: str) -> dict[str, torch.Tensor]:
    """A state dict in the layout of GFLA's released generator ``name`` (fashion, market, face, shapenet), from
    its key/shape listing; the ``conv1`` aliases share their tensor with ``model.2``, as in a saved file."""
    listing = f"gfla_{name}_generator.txt" if name in ("face", "shapenet") else f"gfla_pose_generator_{name}.txt"
    shapes = {}
    for line in (FIXTURES / listing).read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split()
            shapes[key] = tuple(int(n) for n in shape.split("x"))
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key in shapes:
        if ".conv1." in key:
            state[key] = state[key.replace(".conv1.", ".model.2.")]
    return state


RELEASED = {  # released checkpoint -> (task, sources, structure channels)
    "fashion": ("pose_deepfashion", 1, 18),
    "market": ("pose_market", 1, 18),
    "face": ("face_faceforensics", 2, 16),
    "shapenet": ("view_shapenet_chair", 1, VIEW_CODE_CHANNELS),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_generator_loads_key_for_key_and_shape_for_shape(name, tmp_path):
    task, num_sources, structure_channels = RELEASED[name]
    cfg = load_task(task, "paper")
    state = official_state(name)
    path = tmp_path / "latest_net_G.pth"
    torch.save({f"module.{key}": value for key, value in state.items()}, path)  # as saved from DataParallel
    generator = build_generator(cfg, "gfla", num_sources, structure_channels)
    load_generator(generator, path, cfg.model)  # strict: every key, every shape
    ours = generator.state_dict()
    assert torch.equal(ours["decoder0.1.shortcut.weight"], state["target.decoder0.1.shortcut.0.weight"])
    assert torch.equal(ours["decoder0.0.model.2.weight"], state["target.decoder0.0.model.0.model.2.weight"])
    assert torch.equal(ours["warper.flow_estimator.jump0.model.2.weight"], state["flow_net.jump0.conv1.weight"])
    finest_stage = cfg.model.layers - min(cfg.model.attn_layers)  # our scales run coarse -> fine
    finest = len(cfg.model.attn_layers) - 1
    attention = ["attn"] if num_sources == 1 else ["attn_p", "attn_r"]  # face: previous, reference
    for source, prefix in enumerate(attention):
        released = state[f"target.{prefix}{finest_stage}.fully_connect_layer.0.weight"]
        assert torch.equal(ours[f"warper.attention.{finest}.{source}.fully_connect_layer.0.weight"], released)
        # The original's first layer reads cat(target patch, source patch): its halves keep those roles.
        block = generator.warper.attention[finest][source]
        halves = block.pair_weights()
        assert torch.equal(halves["target"], released[:, : block.channels])
        assert torch.equal(halves["source"], released[:, block.channels :])
    encoders = ["source"] if num_sources == 1 else ["source_previous", "source_reference"]
    for source, prefix in enumerate(encoders):
        assert torch.equal(ours[f"sources.{source}.block0.model.2.weight"], state[f"{prefix}.block0.model.2.weight"])
    if name == "shapenet":  # the view code's decoder and the flow net's bottleneck ResBlocks wrapper
        assert torch.equal(ours["target_encoder.block1.shortcut.weight"], state["target.block1.shortcut.0.weight"])
        assert torch.equal(ours["warper.flow_estimator.cat.shortcut.weight"],
                           state["flow_net.cat.model.0.shortcut.0.weight"])


def test_released_face_generator_splits_its_flow_and_masks_as_the_original():
    """FaceFlowNet's heads hold (previous, reference) flows in channels (0-1, 2-3) and masks in (0, 1):
    with only the reference's flow bias set, only the reference's flow moves; likewise the masks."""
    cfg = load_task("face_faceforensics", "paper", ["model.ngf=8", "model.img_f=16", "model.flow_ngf=8",
                                                     "model.flow_img_f=16", "dataset.resolution=[64,64]"])
    generator = build_generator(cfg, "gfla", 2, 16)
    state = {key: value.clone() for key, value in generator.state_dict().items()}
    head = f"warper.flow_estimator.output{generator.warper.flow_estimator.decoder_layers - 1}"
    state[f"{head}.weight"].zero_()
    state[f"{head}.bias"].copy_(torch.tensor([0.0, 0.0, 3.0, -2.0]))
    mask_head = head.replace("output", "mask") + ".0"
    state[f"{mask_head}.weight"].zero_()
    state[f"{mask_head}.bias"].copy_(torch.tensor([-4.0, 4.0]))
    generator.load_state_dict(state)
    inputs = WarpInputs([torch.zeros(1, 3, 64, 64)] * 2, [torch.zeros(1, 16, 64, 64)] * 2, torch.zeros(1, 16, 64, 64))
    flows, masks = generator.warper.flow_estimator(inputs)
    previous, reference = flows[-1]
    assert torch.allclose(masks[-1][0], torch.sigmoid(torch.tensor(-4.0))) and masks[-1][0].shape[1] == 1
    assert torch.allclose(masks[-1][1], torch.sigmoid(torch.tensor(4.0)))
    assert torch.equal(previous, torch.zeros_like(previous))
    assert torch.equal(reference[0, 0], torch.full_like(reference[0, 0], 3.0))
    assert torch.equal(reference[0, 1], torch.full_like(reference[0, 1], -2.0))


def test_released_generator_with_another_config_is_a_clear_error(tmp_path):
    path = tmp_path / "latest_net_G.pth"
    torch.save(official_state("fashion"), path)
    cfg = load_task("pose_deepfashion", "paper", ["model.ngf=32"])
    with pytest.raises(OfficialCheckpointError, match=r"(?s)latest_net_G\.pth.*size mismatch"):
        load_generator(build_generator(cfg, "gfla", 1, 18), path, cfg.model)
    state = official_state("fashion")
    state["flow_net.jump0.conv1.weight"] = state["flow_net.jump0.conv1.weight"] + 1
    with pytest.raises(OfficialCheckpointError, match=r"flow_net\.jump0\.conv1\.weight: expected the same tensor"):
        convert_generator(state, cfg.model)
    layer_3_absent = (
        r"target\.attn0\.fully_connect_layer\.0\.weight: attention at layer 3, but model\.attn_layers is \[2\]"
    )
    with pytest.raises(OfficialCheckpointError, match=layer_3_absent):
        convert_generator(official_state("fashion"), load_task("pose_market", "paper").model)
    pose_file_for_face = r"source\.block0\.model\.0\.weight: not a key of GFLA's FaceGenerator"
    with pytest.raises(OfficialCheckpointError, match=pose_file_for_face):
        convert_generator(official_state("fashion"), cfg.model, "FaceGenerator")  # a pose file for the face model
    with pytest.raises(OfficialCheckpointError, match=r"source_previous\..*: not a key of GFLA's PoseGenerator"):
        convert_generator(official_state("face"), load_task("face_faceforensics", "paper").model)
    with pytest.raises(OfficialCheckpointError, match="unknown GFLA generator 'DanceGenerator'"):
        convert_generator(official_state("fashion"), cfg.model, "DanceGenerator")
    view = load_task("view_shapenet_chair", "paper")  # a pose file for the view model: keys it lacks
    with pytest.raises(OfficialCheckpointError, match=r"(?s)latest_net_G\.pth.*Missing key.*flow_estimator\.cat"):
        load_generator(build_generator(view, "gfla", 1, VIEW_CODE_CHANNELS), path, view.model)
