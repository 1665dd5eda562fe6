"""The GFLA ops against naive references written for clarity (Python loops over pixels and offsets)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.ops import (
    LocalAttention,
    extract_blocks,
    flow_warp,
    gaussian_resample,
    tiled_local_attention,
)

F64 = torch.float64


# ----------------------------------------------------------------------------- naive references


def naive_bilinear(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The original CUDA arithmetic: floor neighbours, both clamped to the border; image is (C, H, W)."""
    height, width = image.shape[1:]
    x0, y0 = math.floor(x.item()), math.floor(y.item())
    wx, wy = x - x0, y - y0

    def pixel(row: int, col: int) -> torch.Tensor:
        return image[:, min(max(row, 0), height - 1), min(max(col, 0), width - 1)]

    top = (1 - wx) * pixel(y0, x0) + wx * pixel(y0, x0 + 1)
    bottom = (1 - wx) * pixel(y0 + 1, x0) + wx * pixel(y0 + 1, x0 + 1)
    return (1 - wy) * top + wy * bottom


def naive_offsets(k: int) -> list[int]:
    return [index - k // 2 for index in range(k)]


def naive_patch(image: torch.Tensor, flow: torch.Tensor | None, y: int, x: int, k: int) -> list[torch.Tensor]:
    """The k*k samples around (x + fx, y + fy), row-major over (oy, ox)."""
    fx = flow[0, y, x] if flow is not None else torch.zeros((), dtype=image.dtype)
    fy = flow[1, y, x] if flow is not None else torch.zeros((), dtype=image.dtype)
    return [naive_bilinear(image, x + fx + ox, y + fy + oy) for oy in naive_offsets(k) for ox in naive_offsets(k)]


def naive_extract_blocks(source: torch.Tensor, flow: torch.Tensor | None, k: int) -> torch.Tensor:
    batch, channels, height, width = source.shape
    rows = []
    for b in range(batch):
        image_rows = []
        for big_y in range(k * height):
            values = []
            for big_x in range(k * width):
                y, x = big_y // k, big_x // k
                oy, ox = big_y % k - k // 2, big_x % k - k // 2
                zero = torch.zeros((), dtype=source.dtype)
                fx = flow[b, 0, y, x] if flow is not None else zero
                fy = flow[b, 1, y, x] if flow is not None else zero
                values.append(naive_bilinear(source[b], x + fx + ox, y + fy + oy))
            image_rows.append(torch.stack(values, -1))
        rows.append(torch.stack(image_rows, -2))
    return torch.stack(rows)


def naive_local_attention(module: LocalAttention, source, target, flow, return_attention=False):
    k = module.kernel_size
    first, _, last = module.fully_connect_layer
    weight = module.pair_weights()  # the original's patch order lives in bench.ops.local_attention
    batch, _, height, width = target.shape
    outputs, attentions = [], []
    for b in range(batch):
        out_map = [[None] * width for _ in range(height)]
        attn_map = [[None] * width for _ in range(height)]
        for y in range(height):
            for x in range(width):
                source_patch = naive_patch(source[b], flow[b], y, x, k)
                target_patch = naive_patch(target[b], None, y, x, k)
                hidden = first.bias.clone()
                for index in range(k * k):
                    dy, dx = divmod(index, k)
                    hidden = hidden + weight["source"][:, :, dy, dx] @ source_patch[index]
                    hidden = hidden + weight["target"][:, :, dy, dx] @ target_patch[index]
                hidden = torch.where(hidden > 0, hidden, 0.1 * hidden)
                logits = last.weight[:, :, 0, 0] @ hidden + last.bias
                attention = torch.softmax(logits, 0)
                out = sum(attention[index] * source_patch[index] for index in range(k * k)) / k**2
                out_map[y][x], attn_map[y][x] = out, attention
        outputs.append(torch.stack([torch.stack(row, -1) for row in out_map], -2))
        attentions.append(torch.stack([torch.stack(row, -1) for row in attn_map], -2))
    out, attention = torch.stack(outputs), torch.stack(attentions)
    return (out, attention) if return_attention else out


def naive_gaussian_resample(source: torch.Tensor, flow: torch.Tensor, k: int = 4, sigma: float = 2.0):
    batch, _, height, width = source.shape
    result = torch.zeros_like(source[:, :, : flow.shape[2], : flow.shape[3]])
    for b in range(batch):
        for y in range(flow.shape[2]):
            for x in range(flow.shape[3]):
                px, py = x + flow[b, 0, y, x], y + flow[b, 1, y, x]
                xs = [math.floor(px.item()) - k // 2 + 1 + t for t in range(k)]
                ys = [math.floor(py.item()) - k // 2 + 1 + t for t in range(k)]
                wx = [torch.exp(-((px - tap) ** 2) / (2 * sigma**2)) for tap in xs]
                wy = [torch.exp(-((py - tap) ** 2) / (2 * sigma**2)) for tap in ys]
                total = sum(wy_ * wx_ for wy_ in wy for wx_ in wx)
                value = 0
                for row, wy_ in zip(ys, wy):
                    for col, wx_ in zip(xs, wx):
                        pixel = source[b, :, min(max(row, 0), height - 1), min(max(col, 0), width - 1)]
                        value = value + wy_ * wx_ * pixel
                result[b, :, y, x] = value / total
    return result


# ----------------------------------------------------------------------------- helpers


def fractional_flow(batch: int, height: int, width: int, reach: int = 3, seed: int = 0,
                    dtype=F64) -> torch.Tensor:
    """Integer part in [-reach, reach] plus a fraction in [0.2, 0.8]: never on an integer position."""
    generator = torch.Generator().manual_seed(seed)
    whole = torch.randint(-reach, reach + 1, (batch, 2, height, width), generator=generator)
    return (whole + 0.2 + 0.6 * torch.rand(batch, 2, height, width, generator=generator)).to(dtype)


def random(*shape, seed: int = 1, dtype=F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def assert_same_value_and_grad(fast, naive, inputs: list[torch.Tensor], atol: float = 1e-9) -> None:
    """fast(*inputs) == naive(*inputs) in value and in the gradient of a random projection."""
    leaves = [tensor.detach().requires_grad_() for tensor in inputs]
    fast_out = fast(*leaves)
    naive_out = naive(*leaves)
    torch.testing.assert_close(fast_out, naive_out, atol=atol, rtol=0)
    weight = random(*fast_out.shape, seed=7, dtype=fast_out.dtype)
    fast_grads = torch.autograd.grad((fast_out * weight).sum(), leaves)
    naive_grads = torch.autograd.grad((naive_out * weight).sum(), leaves)
    for fast_grad, naive_grad in zip(fast_grads, naive_grads):
        torch.testing.assert_close(fast_grad, naive_grad, atol=atol, rtol=0)


def attention_module(channels: int, k: int, hidden: int = 6, seed: int = 3, dtype=F64) -> LocalAttention:
    torch.manual_seed(seed)
    return LocalAttention(channels, k, hidden).to(dtype)


# ----------------------------------------------------------------------------- flow_warp


def test_flow_warp_matches_naive_bilinear_in_value_and_gradient():
    source, flow = random(2, 3, 4, 5), fractional_flow(2, 4, 5)

    def naive(source, flow):
        return naive_extract_blocks(source, flow, 1)

    assert_same_value_and_grad(flow_warp, naive, [source, flow])


def test_flow_warp_integer_flow_shifts_exactly_and_clamps_outside():
    source = random(1, 2, 5, 6)
    flow = torch.zeros(1, 2, 5, 6, dtype=F64)
    flow[:, 0] = 2.0
    flow[:, 1] = -1.0
    out = flow_warp(source, flow)
    torch.testing.assert_close(out[:, :, 1:, :4], source[:, :, :4, 2:], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:, :, 1:, 4:], source[:, :, :4, 5:].expand(-1, -1, -1, 2), atol=1e-12, rtol=0)
    far = flow_warp(source, torch.full_like(flow, 100.0))
    torch.testing.assert_close(far, source[:, :, -1:, -1:].expand_as(source), atol=1e-12, rtol=0)


def test_flow_warp_rejects_mismatched_flow():
    with pytest.raises(ValueError, match="flow"):
        flow_warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))


# ----------------------------------------------------------------------------- extract_blocks


@pytest.mark.parametrize("k", [3, 4])
def test_extract_blocks_matches_naive_in_value_and_gradient(k):
    source, flow = random(2, 2, 3, 4), fractional_flow(2, 3, 4)
    assert_same_value_and_grad(lambda s, f: extract_blocks(s, f, k), lambda s, f: naive_extract_blocks(s, f, k),
                               [source, flow])


def test_extract_blocks_layout_even_kernel_is_asymmetric_and_border_clamped():
    image = torch.arange(20, dtype=F64).view(1, 1, 4, 5)  # value = 5 * row + col
    blocks = extract_blocks(image, None, 2)  # offsets -1, 0
    assert blocks.shape == (1, 1, 8, 10)
    # Patch (1, 2): rows 0..1, cols 1..2.
    torch.testing.assert_close(blocks[0, 0, 2:4, 4:6], torch.tensor([[1.0, 2.0], [6.0, 7.0]], dtype=F64))
    # Patch (0, 0): offset -1 clamps to row/col 0.
    torch.testing.assert_close(blocks[0, 0, 0:2, 0:2], torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=F64))
    odd = extract_blocks(image, None, 3)  # offsets -1, 0, 1; patch (3, 4) at the bottom-right corner
    expected = torch.tensor([[13.0, 14.0, 14.0], [18.0, 19.0, 19.0], [18.0, 19.0, 19.0]], dtype=F64)
    torch.testing.assert_close(odd[0, 0, 9:12, 12:15], expected)


def test_extract_blocks_rejects_bad_shapes():
    with pytest.raises(ValueError, match="source"):
        extract_blocks(torch.zeros(3, 4, 4), None, 3)
    with pytest.raises(ValueError, match="flow"):
        extract_blocks(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), 3)
    with pytest.raises(ValueError, match="kernel_size"):
        extract_blocks(torch.zeros(1, 3, 4, 4), None, 0)


def test_extract_blocks_none_flow_is_zero_flow():
    source = random(2, 3, 4, 4)
    zero_flow = torch.zeros(2, 2, 4, 4, dtype=F64)
    torch.testing.assert_close(extract_blocks(source, None, 3), extract_blocks(source, zero_flow, 3))


# ----------------------------------------------------------------------------- LocalAttention


def test_local_attention_parameters_mirror_the_original_checkpoint():
    module = LocalAttention(channels=8, kernel_size=3, hidden=128)
    shapes = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    assert shapes == {
        "fully_connect_layer.0.weight": (128, 16, 3, 3),
        "fully_connect_layer.0.bias": (128,),
        "fully_connect_layer.2.weight": (9, 128, 1, 1),
        "fully_connect_layer.2.bias": (9,),
    }
    assert module.fully_connect_layer[1].negative_slope == 0.1


@pytest.mark.parametrize("seen", ["target", "source"])
def test_first_layer_sees_the_target_patch_in_its_first_half_like_the_original(seen):
    """The original's ExtractorAttn feeds cat((block_target, block_source), 1) to its first layer: W1's
    input channels [0, C) weigh the target patch, [C, 2C) the source patch.  With the other half of
    W1 zeroed, the attention follows only the patch ``seen``, in the fast op, the tiled port and the
    naive reference alike."""
    channels, k = 3, 3
    module = attention_module(channels, k, hidden=5)
    with torch.no_grad():
        halves = {"target": slice(0, channels), "source": slice(channels, 2 * channels)}
        ignored = "source" if seen == "target" else "target"
        module.fully_connect_layer[0].weight[:, halves[ignored]] = 0
    inputs = {"source": random(1, channels, 5, 6, seed=1), "target": random(1, channels, 5, 6, seed=2)}
    flow = fractional_flow(1, 5, 6)

    def attention(source, target):
        fast_out, fast = module(source, target, flow, return_attention=True)
        naive_out, naive = naive_local_attention(module, source, target, flow, return_attention=True)
        torch.testing.assert_close(fast, naive, atol=1e-10, rtol=0)
        torch.testing.assert_close(fast_out, naive_out, atol=1e-10, rtol=0)
        torch.testing.assert_close(fast_out, tiled_local_attention(module, source, target, flow), atol=1e-10, rtol=0)
        return fast

    before = attention(**inputs)
    assert torch.equal(attention(**{**inputs, ignored: random(1, channels, 5, 6, seed=9)}), before)
    changed = attention(**{**inputs, seen: random(1, channels, 5, 6, seed=9)})
    assert (changed - before).abs().max() > 1e-3


@pytest.mark.parametrize("k", [3, 4])
def test_local_attention_matches_naive_in_value_and_all_gradients(k):
    module = attention_module(channels=2, k=k)
    source, target = random(2, 2, 3, 4, seed=1), random(2, 2, 3, 4, seed=2)
    flow = fractional_flow(2, 3, 4)
    parameters = list(module.parameters())
    inputs = [source, target, flow]
    leaves = [tensor.detach().requires_grad_() for tensor in inputs]
    (fast_out, fast_attention) = module(*leaves, return_attention=True)
    (naive_out, naive_attention) = naive_local_attention(module, *leaves, return_attention=True)
    torch.testing.assert_close(fast_out, naive_out, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast_attention, naive_attention, atol=1e-9, rtol=0)
    projection = random(*fast_out.shape, seed=7)
    fast_grads = torch.autograd.grad((fast_out * projection).sum(), leaves + parameters)
    naive_grads = torch.autograd.grad((naive_out * projection).sum(), leaves + parameters)
    for fast_grad, naive_grad in zip(fast_grads, naive_grads):
        torch.testing.assert_close(fast_grad, naive_grad, atol=1e-9, rtol=0)


def test_local_attention_float32_matches_naive_to_1e5():
    module = attention_module(channels=3, k=3, dtype=torch.float32)
    source, target = random(1, 3, 4, 4, dtype=torch.float32), random(1, 3, 4, 4, seed=2, dtype=torch.float32)
    flow = fractional_flow(1, 4, 4, dtype=torch.float32)
    assert_same_value_and_grad(module, lambda s, t, f: naive_local_attention(module, s, t, f), [source, target, flow],
                               atol=1e-5)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_tiled_port_equals_local_attention(k):
    module = attention_module(channels=3, k=k, hidden=5)
    source, target = random(2, 3, 6, 7, seed=1), random(2, 3, 6, 7, seed=2)
    flow = fractional_flow(2, 6, 7, reach=8)  # reaches past the border
    assert_same_value_and_grad(module, lambda s, t, f: tiled_local_attention(module, s, t, f), [source, target, flow])


def test_source_larger_than_target_samples_in_source_pixels():
    module = attention_module(channels=2, k=3, hidden=5)
    source, target, flow = random(2, 2, 7, 9, seed=1), random(2, 2, 4, 5, seed=2), fractional_flow(2, 4, 5)
    assert_same_value_and_grad(module, lambda s, t, f: tiled_local_attention(module, s, t, f), [source, target, flow])


def test_local_attention_gradcheck():
    module = attention_module(channels=2, k=3, hidden=4)
    inputs = (random(1, 2, 3, 3, seed=1), random(1, 2, 3, 3, seed=2), fractional_flow(1, 3, 3, reach=2))
    leaves = tuple(tensor.requires_grad_() for tensor in inputs)
    assert torch.autograd.gradcheck(module, leaves, eps=1e-6, atol=1e-6)


def test_extract_blocks_and_resample_gradcheck():
    source, flow = random(1, 2, 3, 4).requires_grad_(), fractional_flow(1, 3, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda s, f: extract_blocks(s, f, 4), (source, flow), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(gaussian_resample, (source, flow), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(flow_warp, (source, flow), eps=1e-6, atol=1e-6)


def one_hot_centre_module(channels: int, k: int) -> LocalAttention:
    """Zero first layer, so the logits are the last bias: a huge centre logit selects offset (0, 0)."""
    module = attention_module(channels, k)
    centre = (k // 2) * k + k // 2
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.zero_()
        module.fully_connect_layer[2].bias[centre] = 1e4
    return module


@pytest.mark.parametrize("k", [3, 4])
def test_one_hot_centre_attention_reproduces_the_source_divided_by_k_squared(k):
    module = one_hot_centre_module(channels=3, k=k)
    source, target = random(2, 3, 5, 6), random(2, 3, 5, 6, seed=2)
    out, attention = module(source, target, torch.zeros(2, 2, 5, 6, dtype=F64), return_attention=True)
    torch.testing.assert_close(out * k**2, source, atol=1e-12, rtol=0)
    assert torch.all(attention[:, (k // 2) * k + k // 2] == 1)


def test_integer_flow_shifts_the_attended_features_exactly():
    module = one_hot_centre_module(channels=2, k=3)
    source, target = random(1, 2, 5, 6), random(1, 2, 5, 6, seed=2)
    flow = torch.zeros(1, 2, 5, 6, dtype=F64)
    flow[:, 0], flow[:, 1] = -1.0, 2.0
    out = module(source, target, flow) * 9
    torch.testing.assert_close(out[:, :, :3, 1:], source[:, :, 2:, :-1], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:, :, 3:, 1:], source[:, :, 4:, :-1].expand(-1, -1, 2, -1), atol=1e-12, rtol=0)


def test_flows_pointing_outside_clamp_to_the_border_like_the_original():
    module = attention_module(channels=2, k=3)
    source, target = random(1, 2, 4, 4), random(1, 2, 4, 4, seed=2)
    far_right_down = torch.full((1, 2, 4, 4), 50.3, dtype=F64)
    out = module(source, target, far_right_down)
    # Every source sample is the bottom-right pixel, and the attention weights sum to one.
    torch.testing.assert_close(out * 9, source[:, :, -1:, -1:].expand_as(out), atol=1e-12, rtol=0)
    torch.testing.assert_close(out, naive_local_attention(module, source, target, far_right_down), atol=1e-12, rtol=0)


def test_attention_sums_to_one_and_bad_shapes_are_rejected():
    module = attention_module(channels=2, k=3)
    source, target, flow = random(2, 2, 4, 5), random(2, 2, 4, 5, seed=2), fractional_flow(2, 4, 5)
    _, attention = module(source, target, flow, return_attention=True)
    assert attention.shape == (2, 9, 4, 5)
    torch.testing.assert_close(attention.sum(1), torch.ones(2, 4, 5, dtype=F64))
    with pytest.raises(ValueError, match="source"):
        module(random(2, 3, 4, 5), target, flow)
    with pytest.raises(ValueError, match="target"):
        module(source, random(1, 2, 4, 5), flow)
    with pytest.raises(ValueError, match="flow"):
        module(source, target, flow[:, :, :3])


def test_local_attention_on_a_single_row_and_batch_of_three():
    module = attention_module(channels=2, k=5)
    source, target, flow = random(3, 2, 1, 4), random(3, 2, 1, 4, seed=2), fractional_flow(3, 1, 4)
    torch.testing.assert_close(module(source, target, flow), naive_local_attention(module, source, target, flow),
                               atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- gaussian_resample


def test_gaussian_resample_matches_naive_in_value_and_gradient():
    source, flow = random(2, 3, 4, 5), fractional_flow(2, 4, 5)
    flow[0, :, 0, 0] = torch.tensor([-2.7, -1.4], dtype=F64)  # negative coordinates: floor, not int()
    assert_same_value_and_grad(gaussian_resample, naive_gaussian_resample, [source, flow])


def test_gaussian_resample_preserves_constants_and_rejects_odd_kernels():
    constant = torch.full((2, 3, 5, 5), 1.7, dtype=F64)
    torch.testing.assert_close(gaussian_resample(constant, fractional_flow(2, 5, 5, reach=9)), constant)
    with pytest.raises(ValueError, match="even"):
        gaussian_resample(constant, torch.zeros(2, 2, 5, 5, dtype=F64), kernel_size=3)


def test_gaussian_resample_tap_weights():
    """Zero flow, k=2: taps floor(x) and floor(x)+1 at distances 0 and 1, normalised."""
    source = torch.zeros(1, 1, 1, 3, dtype=F64)
    source[..., 1] = 1.0
    out = gaussian_resample(source, torch.zeros(1, 2, 1, 3, dtype=F64), kernel_size=2, sigma=1.0)
    neighbour = math.exp(-0.5) / (1 + math.exp(-0.5))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([neighbour, 1 - neighbour, 0.0], dtype=F64))


# ----------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    module = attention_module(channels=4, k=3, dtype=torch.float32)
    source, target = random(2, 4, 6, 6, dtype=torch.float32), random(2, 4, 6, 6, seed=2, dtype=torch.float32)
    flow = fractional_flow(2, 6, 6, dtype=torch.float32)
    cpu = module(source, target, flow)
    gpu = module.cuda()(source.cuda(), target.cuda(), flow.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gaussian_resample(source.cuda(), flow.cuda()).cpu(), gaussian_resample(source, flow),
                               atol=1e-5, rtol=1e-5)
    assert F.mse_loss(flow_warp(source.cuda(), flow.cuda()).cpu(), flow_warp(source, flow)) < 1e-10
