"""Transport metrics (epe, occlusion) and the flow resizing they rely on, on exactly known flows."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import bench.metrics  # noqa: F401  (registers the metrics)
from bench.metrics.base import EvalContext
from bench.metrics.evaluate import evaluate
from bench.metrics.transport import NO_FLOW, NO_GROUND_TRUTH, NO_MASK, TransportStats, auroc
from bench.ops import downsample_truth, upsample_flow
from bench.registry import METRICS
from bench.warp import TransportTruth

SIZE = (16, 24)  # H, W of the image
SCALES = (4, 2)  # map = image / factor, coarse -> fine


def shift_truth(batch: int, dx: int, dy: int, sources: int = 1) -> TransportTruth:
    """The ground truth of a target that is the source shifted: target(x, y) = source(x + dx, y + dy)."""
    height, width = SIZE
    flow = torch.tensor([float(dx), float(dy)]).view(1, 1, 2, 1, 1).expand(batch, sources, 2, height, width)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    inside = ((xs + dx >= 0) & (xs + dx < width) & (ys + dy >= 0) & (ys + dy < height)).float()
    visibility = inside.view(1, 1, 1, height, width).expand(batch, sources, 1, height, width)
    return TransportTruth.of_sources(flow.clone(), visibility.clone())


def constant_plan(batch: int, dx: float, dy: float, sources: int = 1, masks: list | None = None) -> dict:
    """Flows of (dx, dy) image pixels at every scale, in pixels of that scale."""
    height, width = SIZE
    flows = [
        [torch.tensor([dx / f, dy / f]).view(1, 2, 1, 1).expand(batch, 2, height // f, width // f)
         for _ in range(sources)]
        for f in SCALES
    ]
    plan = {"flows": flows}
    if masks is not None:
        plan["masks"] = masks
    return plan


def scored(stats: TransportStats, names=("epe", "occlusion")) -> dict:
    fake = torch.zeros(len(stats.images) or 1, 3, *SIZE, dtype=torch.uint8)
    return evaluate(fake, fake, list(names), EvalContext(transport=stats))


def test_registered_with_direction_and_kind() -> None:
    assert METRICS.get("epe").higher_is_better is False
    assert METRICS.get("occlusion").higher_is_better is True
    assert METRICS.get("epe").kind == METRICS.get("occlusion").kind == "transport"


def test_upsample_flow_scales_values_and_downsample_inverts_it() -> None:
    flow = torch.tensor([1.5, -2.0]).view(1, 2, 1, 1).expand(1, 2, 4, 6)
    up = upsample_flow(flow, (16, 24))
    assert torch.allclose(up[0, 0], torch.full((16, 24), 6.0)) and torch.allclose(up[0, 1], torch.full((16, 24), -8.0))
    down, coverage = downsample_truth(up, torch.ones(1, 1, 16, 24), (4, 6))
    assert torch.allclose(down, flow) and torch.allclose(coverage, torch.ones(1, 1, 4, 6))


def test_downsampled_truth_averages_only_visible_flow() -> None:
    flow = torch.zeros(1, 2, 2, 2)
    flow[0, 0, 0, 0] = 8.0  # a visible pixel of the 2x2 block
    flow[0, 0, 1, 1] = 100.0  # an invisible one: ignored
    visibility = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    down, coverage = downsample_truth(flow, visibility, (1, 1))
    assert coverage.item() == pytest.approx(0.75)
    assert down[0, 0].item() == pytest.approx(8.0 / 3 / 2)  # mean over the 3 visible, in pixels of the 1x1 map


def test_epe_of_the_exact_flow_is_zero_at_every_scale() -> None:
    stats = TransportStats()
    stats.add(constant_plan(2, 3, -2), shift_truth(2, 3, -2), 2)
    result = scored(stats, ["epe"])["epe"]
    assert result.value == pytest.approx(0.0, abs=1e-6)
    assert result.breakdown["per_scale"] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert result.per_image == pytest.approx([0.0, 0.0], abs=1e-6) and result.count == 2


def test_epe_of_a_constant_error_is_that_error_in_image_pixels() -> None:
    stats = TransportStats()
    stats.add(constant_plan(3, 3 + 3, -2 + 4), shift_truth(3, 3, -2), 3)  # error (3, 4): 5 pixels
    result = scored(stats, ["epe"])["epe"]
    assert result.value == pytest.approx(5.0) and result.std == pytest.approx(0.0, abs=1e-6)
    assert result.breakdown["per_scale"] == pytest.approx([5.0, 5.0])
    assert result.breakdown["per_source"] == {"source": pytest.approx(5.0)}
    assert result.to_dict()["breakdown"]["per_scale"] == pytest.approx([5.0, 5.0])


def test_epe_ignores_invisible_pixels() -> None:
    truth = shift_truth(1, 4, 0)
    plan = constant_plan(1, 4, 0)
    finest = plan["flows"][-1][0].clone()
    invisible_at_fine = truth.visibility[0][:, :, ::2, ::2] == 0  # map pixels whose image pixels are all invisible
    finest[:, 0][invisible_at_fine[:, 0]] = 50.0
    plan["flows"][-1] = [finest]
    stats = TransportStats()
    stats.add(plan, truth, 1)
    # only the finest scale was spoiled, and only where bilinear upsampling reaches visible pixels at the seam
    visible = truth.visibility[0][0, 0] > 0
    error = (upsample_flow(finest, SIZE)[0, 0] - 4).abs()[visible].mean().item()
    result = scored(stats, ["epe"])["epe"]
    assert result.value == pytest.approx(error)
    assert result.breakdown["per_scale"][0] == pytest.approx(0.0, abs=1e-6)


def test_epe_per_source_for_two_sources() -> None:
    stats = TransportStats()
    plan = constant_plan(1, 0, 0, sources=2)
    plan["flows"] = [[scale[0], scale[1] + 1.0 / f] for scale, f in zip(plan["flows"], SCALES)]  # source 1: +1 x
    stats.add(plan, shift_truth(1, 0, 0, sources=2), 1)
    result = scored(stats, ["epe"])["epe"]
    assert result.breakdown["per_source"] == {"previous": pytest.approx(0.0, abs=1e-6),
                                              "reference": pytest.approx(math.sqrt(2.0))}
    assert result.value == pytest.approx(math.sqrt(2.0) / 2)  # pooled over both sources' visible pixels


def _brute_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pairs = [(p, n) for p, n in itertools.product(scores[labels], scores[~labels])]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_auroc_matches_pair_counting_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, 40) / 4.0
    labels = rng.random(40) > 0.4
    assert auroc(scores, labels) == pytest.approx(_brute_auroc(scores, labels))
    assert math.isnan(auroc(scores, np.ones(40, bool)))


def _masks_at_scales(full: torch.Tensor) -> list[list[torch.Tensor]]:
    return [[torch.nn.functional.avg_pool2d(full, f)] for f in SCALES]


def test_occlusion_scores_known_masks() -> None:
    truth = shift_truth(1, 6, 4)  # a visible block and an invisible L at the far sides
    visibility = truth.visibility[0]
    cases = {"truth": (visibility, 1.0), "inverted": (1 - visibility, 0.0), "constant": (torch.full_like(visibility,
                                                                                                       0.7), 0.5)}
    for name, (mask, expected) in cases.items():
        stats = TransportStats()
        stats.add(constant_plan(1, 6, 4, masks=_masks_at_scales(mask)), truth, 1)
        result = scored(stats, ["occlusion"])["occlusion"]
        assert result.value == pytest.approx(expected, abs=0.02), name
        assert "AUROC" in result.protocol["score"] and "threshold-free" in result.protocol["why"]


def test_occlusion_is_undefined_where_everything_is_visible() -> None:
    stats = TransportStats()
    stats.add(constant_plan(1, 0, 0, masks=_masks_at_scales(torch.ones(1, 1, *SIZE))), shift_truth(1, 0, 0), 1)
    result = scored(stats, ["occlusion"])["occlusion"]
    assert result.value is None and "both visible and invisible" in result.unavailable
    assert math.isnan(result.per_image[0])


def test_unavailable_without_ground_truth_flows_or_masks() -> None:
    no_truth = TransportStats()
    no_truth.add(constant_plan(2, 1, 1), None, 2)
    assert {r.unavailable for r in scored(no_truth).values()} == {NO_GROUND_TRUTH}
    assert {r.unavailable for r in evaluate(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), None, ["epe", "occlusion"],
                                           EvalContext()).values()} == {NO_GROUND_TRUTH}

    no_flow = TransportStats()
    no_flow.add({"masks": [[], []]}, shift_truth(2, 1, 1), 2)
    results = scored(no_flow)
    assert results["epe"].unavailable == NO_FLOW and results["occlusion"].unavailable == NO_MASK

    masks_only = TransportStats()
    masks_only.add({"masks": _masks_at_scales(shift_truth(1, 5, 0).visibility[0])}, shift_truth(1, 5, 0), 1)
    results = scored(masks_only)
    assert results["epe"].unavailable == NO_FLOW and results["occlusion"].value == pytest.approx(1.0, abs=0.02)


def test_merged_shards_keep_rank_order() -> None:
    first, second = TransportStats(), TransportStats()
    first.add(constant_plan(1, 0, 0), shift_truth(1, 0, 0), 1)
    second.add(constant_plan(1, 1, 0), shift_truth(1, 0, 0), 1)
    merged = TransportStats.merged([first, second])
    assert scored(merged, ["epe"])["epe"].per_image == pytest.approx([0.0, 1.0], abs=1e-6)
