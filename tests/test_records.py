"""The results store: atomic locked appends, latest-per-cell, parse errors, cell locks."""

import hashlib
import json
import multiprocessing

import numpy as np
import pytest

from bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bench.records import (
    CellBusyError,
    PerImageError,
    PerImageValues,
    RecordsError,
    RecordStore,
    atomic_write_bytes,
    read_per_image,
)


def _record(key, status="ok", value=1.0):
    return {"cell": {"key": key, "task": "t", "method": "m", "seed": 0}, "status": status,
            "metrics": {"ssim": {"value": value}}}


def test_append_and_read_roundtrip(tmp_path):
    store = RecordStore(tmp_path)
    store.append(_record("a"))
    store.append(_record("b", status="failed"))
    store.append(_record("a", value=2.0))
    records = store.read()
    assert [r["cell"]["key"] for r in records] == ["a", "b", "a"]
    assert store.latest()["a"]["metrics"]["ssim"]["value"] == 2.0
    assert store.completed() == {"a"}


def test_malformed_line_names_file_and_line(tmp_path):
    store = RecordStore(tmp_path)
    store.append(_record("a"))
    with store.path.open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(RecordsError, match=r"records.jsonl line 2: not valid JSON"):
        store.read()


def test_atomic_write_leaves_no_temp_files_and_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_bytes(target, b"old")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def _append_many(results_dir, worker, count):
    store = RecordStore(results_dir)
    for i in range(count):
        store.append(_record(f"w{worker}-{i}"))


def test_concurrent_writers_never_lose_or_tear_records(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(tmp_path, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 45
    assert {json.loads(line)["cell"]["key"] for line in lines} == {f"w{w}-{i}" for w in range(3) for i in range(15)}


def test_cell_lock_excludes_a_second_holder(tmp_path):
    store = RecordStore(tmp_path)
    with store.cell_lock("k"):
        other = RecordStore(tmp_path)
        with pytest.raises(CellBusyError):
            with other.cell_lock("k"):
                pass
    with RecordStore(tmp_path).cell_lock("k"):
        pass


def test_checkpoint_roundtrip_and_corruption_detected(tmp_path):
    import torch

    path = tmp_path / "ckpt.pt"
    save_checkpoint({"w": torch.arange(5.0), "step": 7}, path)
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(5.0))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)
    corrupted = bytearray(data)
    corrupted[-5] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a warpbench checkpoint"):
        load_checkpoint(path)


def _per_image(offset=0.0):
    values = {"ssim": np.linspace(0.5, 0.7, 5) + offset, "l1": np.arange(5) / 10}
    return PerImageValues(values, ("a", "b", "c", "d", "e"))


def test_per_image_values_go_to_a_content_addressed_side_file(tmp_path):
    store = RecordStore(tmp_path)
    first, second, third = _record("a"), _record("b"), _record("c")
    store.append(first, _per_image())
    store.append(second, _per_image())  # equal values: the same bytes, the same file
    store.append(third, _per_image(0.1))
    reference = first["per_image"]
    assert reference == second["per_image"] != third["per_image"]
    assert reference["file"] == f"per_image/{reference['sha256']}.npz"
    assert reference["count"] == 5 and reference["metrics"] == ["l1", "ssim"]
    assert hashlib.sha256((tmp_path / reference["file"]).read_bytes()).hexdigest() == reference["sha256"]
    assert len(list((tmp_path / "per_image").iterdir())) == 2
    stored = store.read()[0]
    assert stored["per_image"] == reference  # the JSON line names the file, the values are not in it
    assert "0.55" not in store.path.read_text()
    values = read_per_image(tmp_path, stored)
    assert values.names == ("a", "b", "c", "d", "e")
    np.testing.assert_array_equal(values.values["ssim"], np.linspace(0.5, 0.7, 5))
    assert read_per_image(tmp_path, _record("old")) is None  # an older record names no file


def test_per_image_file_problems_name_the_file(tmp_path):
    store = RecordStore(tmp_path)
    made = _record("a")
    store.append(made, _per_image())
    path = tmp_path / made["per_image"]["file"]
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(PerImageError, match=rf"{path.name}: sha256 differs"):
        read_per_image(tmp_path, made)
    path.unlink()
    with pytest.raises(PerImageError, match=rf"{path.name}: per-image file of record .* is missing"):
        read_per_image(tmp_path, made)
    with pytest.raises(ValueError, match="unequal length"):
        PerImageValues({"ssim": [1.0, 2.0]}, ("only-one",))


def test_paired_metrics_give_one_value_per_image_in_order():
    import torch
    from skimage.metrics import structural_similarity

    from bench.metrics.base import EvalContext
    from bench.metrics.evaluate import evaluate

    generator = torch.Generator().manual_seed(0)
    fake = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=generator)
    real = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=generator)
    results = evaluate(fake, real, ["ssim", "psnr", "l1"], EvalContext())
    for result in results.values():
        assert len(result.per_image) == 3 and result.value == pytest.approx(float(np.mean(result.per_image)))
    second = structural_similarity(real[1].permute(1, 2, 0).numpy(), fake[1].permute(1, 2, 0).numpy(),
                                   data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False)
    assert results["ssim"].per_image[1] == pytest.approx(second)
    assert "per_image" not in results["ssim"].to_dict()  # the record's JSON stays small
