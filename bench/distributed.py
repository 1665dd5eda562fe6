"""Data-parallel training inside one cell under ``torchrun``, from the standard environment only.

``torchrun --nproc_per_node N run_bench.py ...`` starts N copies of the CLI with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; those five variables are
all this module reads.  Without them (or with ``WORLD_SIZE=1``) every function here is a no-op and
the run is an ordinary single process.

Design (who does what):

* The CLI calls :func:`init_from_env` once.  Backend: gloo where CUDA is absent, otherwise gloo for
  CPU tensors and NCCL for CUDA tensors (``"cpu:gloo,cuda:nccl"``), so a cell with
  ``train.device=cpu`` still works on a GPU node; each rank trains on ``cuda:LOCAL_RANK``.
* Every rank builds the same models from the same seed.  Each global batch of the seeded order
  (``bench.training.epoch_batches``, ``train.batch_size`` samples) is cut into ``WORLD_SIZE``
  contiguous shards, one per rank (:func:`shard`), so ``train.batch_size`` stays the *global*
  batch size and must be divisible by the world size.
* Gradients are averaged with one flattened all-reduce per optimiser step, over the parameters of
  the optimiser about to step (:func:`average_gradients`).  ``DistributedDataParallel`` does not fit
  GFLA's trainer: stage 1 trains ``warper.pretrain_parameters()`` through ``warper.plan()`` (not
  through the generator's forward, so a DDP-wrapped generator would never sync them), the
  discriminator runs twice (real, fake) before one backward, and it is frozen during the generator
  step.  Averaging by optimiser covers all three with one rule.  With equal shards this equals the
  gradient of the loss averaged over the global batch (exactly for per-sample means; the style
  loss's Gram matrices are per sample too).  The NaN/Inf check agrees across ranks
  (:func:`any_rank`) so that every rank stops at the same step instead of leaving the others
  blocked in a collective.
* Rank 0 prepares synthetic data first while the others wait (:func:`main_first`), then they find
  it in the cache.  Only rank 0 takes the cell lock, writes checkpoints, generated images, records
  and leaderboards; the lock's outcome is broadcast (:func:`main_decides`).
* Every rank resumes from the cell's checkpoint in ``--work-dir`` (which all nodes must share);
  ranks that found different checkpoints refuse to train.
* Evaluation: each rank generates a contiguous shard of the test set (:func:`shard`); the uint8
  outputs and ground truths are gathered on rank 0 (:func:`gather_to_main`), which computes every
  metric once on the full set (FID is never averaged over ranks).

An error raised on one rank only (a failing disk, an OOM on one GPU) leaves the other ranks waiting
in their next collective until the process group's timeout; torchrun then ends the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    """Number of processes in this cell (``WORLD_SIZE``; 1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (``RANK``; 0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``), which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes checkpoints, outputs, records and leaderboards."""
    return rank() == 0


def active() -> bool:
    """True once the process group of a multi-process run is initialised."""
    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def init_from_env() -> bool:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; returns whether it did.

    ``MASTER_ADDR`` and ``MASTER_PORT`` are read by the ``env://`` rendezvous.
    """
    if world_size() <= 1 or active():
        return active()
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world_size()} but {', '.join(missing)} not set: start multi-process runs with torchrun"
        )
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=rank(), world_size=world_size())
    return True


def shutdown() -> None:
    """Leave the process group (after the last collective)."""
    if active():
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: an index-less ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device.type == "cuda" and device.index is None and world_size() > 1:
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return device


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the body first; the others wait, then run it (and find rank 0's cache)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def shard(items: list[T]) -> list[T]:
    """This rank's contiguous share of ``items`` (shares differ by at most one item, rank 0 first)."""
    size, index = world_size(), rank()
    if not active():
        return items
    base, extra = divmod(len(items), size)
    start = index * base + min(index, extra)
    return items[start : start + base + (1 if index < extra else 0)]


def shard_batches(batches: list[list[int]], batch_size: int) -> list[list[int]]:
    """Each global batch cut into equal per-rank shards; ``batch_size`` must divide by the world size."""
    if not active():
        return batches
    if batch_size % world_size():
        raise ValueError(
            f"train.batch_size={batch_size} is the global batch size and must be divisible by "
            f"WORLD_SIZE={world_size()}"
        )
    return [shard(batch) for batch in batches]


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over the ranks (one flattened all-reduce).

    Parameters without a gradient are left out; every rank runs the same graph, so they are the
    same parameters on every rank.
    """
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def any_rank(flags: torch.Tensor) -> torch.Tensor:
    """Element-wise OR of boolean ``flags`` over the ranks."""
    if not active():
        return flags
    as_int = flags.to(torch.int32)
    dist.all_reduce(as_int, op=dist.ReduceOp.MAX)
    return as_int.bool()


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(value: Any) -> list[Any] | None:
    """Every rank's ``value`` in rank order on rank 0 (``None`` on the other ranks)."""
    if not active():
        return [value]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(value, out, dst=0)
    return out


@contextmanager
def main_decides(enter: Callable[[], AbstractContextManager]) -> Iterator[None]:
    """Enter ``enter()`` on rank 0 only (e.g. a cell lock); an error it raises is raised on every rank."""
    with ExitStack() as stack:
        error = None
        if is_main():
            try:
                stack.enter_context(enter())
            except Exception as exc:  # e.g. CellBusyError: every rank must skip the cell together
                error = exc
        error = broadcast_from_main(error)
        if error is not None:
            raise error
        yield
