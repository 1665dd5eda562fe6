"""The Multiview2Novelview (M2NV) on-disk layout: file names, the view grid and view ids.

One module owns the layout so that the loader (:mod:`bench.data.shapenet`) and the generator that
writes it (:mod:`bench.data.shapes`) both import it, and neither imports the other for it.

Per category ``<cat>`` a directory holds ``data_<cat>.hdf5`` (one group per view, named
``<model>_<az>_<el>``, with ``image`` and ``pose``; generated sets add ``depth``, see
:mod:`bench.data.shapes`), the split lists ``id_<cat>_train.txt`` / ``id_<cat>_test.txt`` and the
test model list ``name_<cat>_test.txt`` (or M2NV's ``model_<cat>_<split>.txt``).
"""

from __future__ import annotations

CATEGORIES = ("car", "chair")
AZIMUTH_BINS = tuple(range(0, 36, 2))  # pose[0]: azimuth in 10 deg units
ELEVATIONS = (0, 10, 20)  # pose[1]: elevation in degrees
GRID = tuple((az, el) for az in AZIMUTH_BINS for el in ELEVATIONS)  # M2NV id-file order: azimuth-major
AZIMUTH_UNIT_DEGREES = 10.0
DEPTH_KEY = "depth"  # optional dataset of a view group: float32 (H, W) ray length to the hit, 0 = no hit


def hdf5_name(category: str) -> str:
    return f"data_{category}.hdf5"


def train_ids_name(category: str) -> str:
    return f"id_{category}_train.txt"


def test_ids_name(category: str) -> str:
    return f"id_{category}_test.txt"


def test_names_name(category: str) -> str:
    return f"name_{category}_test.txt"


def m2nv_models_name(category: str, split: str) -> str:
    """M2NV's per-split model list (``model_<cat>_<split>.txt``)."""
    return f"model_{category}_{split}.txt"


def view_id(model: str, azimuth: int, elevation: int) -> str:
    """The HDF5 group / split-file id of a view."""
    return f"{model}_{azimuth}_{elevation}"


def check_on_grid(azimuth: int, elevation: int) -> None:
    """Raise ValueError unless (azimuth index, elevation) is a view of the M2NV grid."""
    if azimuth not in AZIMUTH_BINS or elevation not in ELEVATIONS:
        raise ValueError(
            f"view (azimuth {azimuth}, elevation {elevation}) is not on the grid: azimuth index in "
            f"{{0, 2, ..., 34}} (10 deg units), elevation in {{0, 10, 20}}"
        )


def parse_view_id(text: str) -> tuple[str, int, int]:
    """Split ``<model>_<az>_<el>`` (the model id may itself contain ``_``) and check the grid."""
    parts = text.rsplit("_", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"expected a view id <model>_<azimuth index>_<elevation>, got {text!r}")
    model, azimuth, elevation = parts[0], int(parts[1]), int(parts[2])
    check_on_grid(azimuth, elevation)
    return model, azimuth, elevation
