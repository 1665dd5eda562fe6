"""Benchmark of GFLA's local attention (issue #9): the fast LocalAttention vs the tiled port vs the floor.

For each size it prints forward+backward wall time (best of ``--repeats``) of

* ``fast``:  ``bench.ops.LocalAttention`` (projected source, no patch tensor, gather loop);
* ``tiled``: ``bench.ops.tiled_local_attention``, the straightforward port of the original layout;
* ``floor``: the FLOPs of the patch fully-connected layer (forward 2 * (2C k^2) * hidden * B h w,
  backward twice that) divided by the matmul throughput of a same-shaped ``torch.mm`` measured in
  the same run,

and the peak memory of each variant against the k^2 * C * H * W * B patch tensor.  On CPU the peak is
the growth of the peak resident set size (VmHWM, reset through /proc/self/clear_refs) over a
second forward+backward in a fresh subprocess per variant whose large allocations are returned to
the system when freed (MALLOC_MMAP_THRESHOLD_), so it tracks live memory; on CUDA it is ``max_memory_allocated`` above
the memory held before the call.

Run:  PYTHONPATH=. python benchmarks/local_attention.py [--quick] [--repeats N] [--threads N]
Targets (issue #9): fast within 2x of the floor, >= 4x faster than tiled, peak <= 1.5x the patch tensor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.ops import LocalAttention, tiled_local_attention
from machine import describe

HIDDEN = 128


@dataclass(frozen=True)
class Case:
    batch: int
    channels: int
    size: int
    kernel_size: int
    dtype: torch.dtype = torch.float32

    @property
    def label(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"B={self.batch} C={self.channels} {self.size}x{self.size} k={self.kernel_size} {dtype}"

    def patch_bytes(self) -> int:
        element = torch.empty((), dtype=self.dtype).element_size()
        return self.kernel_size**2 * self.channels * self.size**2 * self.batch * element

    def fc_flops(self) -> float:
        """Forward + backward FLOPs of the patch fully-connected layer (backward = 2x forward)."""
        forward = 2 * (2 * self.channels * self.kernel_size**2) * HIDDEN * self.batch * self.size**2
        return 3 * forward


def make_inputs(case: Case, device: torch.device) -> tuple[LocalAttention, list[torch.Tensor]]:
    torch.manual_seed(0)
    module = LocalAttention(case.channels, case.kernel_size, HIDDEN).to(device, case.dtype)
    shape = (case.batch, case.channels, case.size, case.size)
    source = torch.randn(shape, device=device, dtype=case.dtype, requires_grad=True)
    target = torch.randn(shape, device=device, dtype=case.dtype, requires_grad=True)
    flow = (3 * torch.randn(case.batch, 2, case.size, case.size, device=device, dtype=case.dtype)).requires_grad_()
    return module, [source, target, flow]


VARIANTS: dict[str, Callable[..., torch.Tensor]] = {
    "fast": lambda module, source, target, flow: module(source, target, flow),
    "tiled": tiled_local_attention,
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(variant: str, module: LocalAttention, inputs: list[torch.Tensor]) -> None:
    VARIANTS[variant](module, *inputs).sum().backward()
    for tensor in [*inputs, *module.parameters()]:
        tensor.grad = None


def interleaved_best(runs: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Best wall time of each run after a warm-up; the runs take turns, so load on a shared machine
    hits them alike."""
    for run in runs.values():
        run()
    synchronize(device)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure_times(case: Case, device: torch.device, repeats: int) -> tuple[float, float, float, float]:
    """(fast, tiled, floor) seconds for one forward+backward at this size, and the matmul FLOP/s."""
    module, inputs = make_inputs(case, device)
    # The patch FC layer's forward as one matmul: (B h w, 2C k^2) x (2C k^2, hidden).
    rows, inner = case.batch * case.size**2, 2 * case.channels * case.kernel_size**2
    left = torch.randn(rows, inner, device=device, dtype=case.dtype)
    right = torch.randn(inner, HIDDEN, device=device, dtype=case.dtype)
    times = interleaved_best({
        "fast": lambda: forward_backward("fast", module, inputs),
        "tiled": lambda: forward_backward("tiled", module, inputs),
        "matmul": lambda: torch.mm(left, right),
    }, device, repeats)
    flops_per_second = 2 * rows * inner * HIDDEN / times["matmul"]
    return times["fast"], times["tiled"], case.fc_flops() / flops_per_second, flops_per_second


def peak_bytes(variant: str, case: Case, device: torch.device) -> int:
    """Peak memory of one forward+backward beyond the inputs (see the module docstring for how)."""
    if device.type == "cuda":
        module, inputs = make_inputs(case, device)
        forward_backward(variant, module, inputs)  # warm-up: allocator and library workspaces
        synchronize(device)
        held = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        forward_backward(variant, module, inputs)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - held
    args = [sys.executable, __file__, "--memory-probe", variant, str(case.batch), str(case.channels),
            str(case.size), str(case.kernel_size), "--threads", str(torch.get_num_threads())]
    # Tensors above 64 KiB get their own mmap, unmapped when freed, so RSS follows the live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    result = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return int(result.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def memory_probe(variant: str, case: Case) -> None:
    """Subprocess body: print the growth (bytes) of the peak RSS over one CPU forward+backward.

    One warm-up pass first (one-time library buffers), then the kernel's high-water mark is reset
    to the current RSS (``/proc/self/clear_refs``; a child otherwise starts with its parent's RSS at
    fork as its peak) and the growth over a second pass is the answer.
    """
    module, inputs = make_inputs(case, torch.device("cpu"))
    forward_backward(variant, module, inputs)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_kib("VmRSS")
    forward_backward(variant, module, inputs)
    print((_status_kib("VmHWM") - before) * 1024)


def cases_for(device: torch.device, quick: bool) -> list[Case]:
    sizes = [Case(2, 16, 16, 5), Case(2, 32, 8, 3)] if quick else [Case(8, 128, 64, 5), Case(8, 256, 32, 3)]
    if device.type != "cuda":
        return sizes
    return sizes + [Case(c.batch, c.channels, c.size, c.kernel_size, torch.bfloat16) for c in sizes]


def report(device: torch.device, quick: bool, repeats: int) -> None:
    print(describe(device))
    memory_method = ("CUDA max_memory_allocated above held memory" if device.type == "cuda"
                     else "peak-RSS growth over a warm pass, fresh subprocess per variant")
    print(f"device {device}; times: forward+backward, best of {repeats}, variants interleaved; "
          f"memory: {memory_method}\n")
    header = (f"{'case':<30} {'fast s':>8} {'tiled s':>8} {'floor s':>8} {'fast/floor':>10} {'tiled/floor':>11} "
              f"{'tiled/fast':>10} {'mm GFLOP/s':>10} {'patch MB':>9} {'fast mem':>9} {'tiled mem':>9}")
    print(header)
    print("-" * len(header))
    for case in cases_for(device, quick):
        fast, tiled, floor, matmul_flops = measure_times(case, device, repeats)
        patch = case.patch_bytes()
        fast_mem, tiled_mem = (peak_bytes(v, case, device) / patch for v in ("fast", "tiled"))
        print(f"{case.label:<30} {fast:8.3f} {tiled:8.3f} {floor:8.3f} {fast / floor:10.2f} "
              f"{tiled / floor:11.2f} {tiled / fast:10.2f} {matmul_flops / 1e9:10.1f} {patch / 2**20:9.1f} "
              f"{fast_mem:8.2f}x {tiled_mem:8.2f}x")
    print("\n(mem columns: peak memory / patch tensor; targets: fast/floor <= 2, tiled/fast >= 4, fast mem <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-probe", nargs=5, metavar=("VARIANT", "B", "C", "SIZE", "K"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        variant, *numbers = args.memory_probe
        memory_probe(variant, Case(*map(int, numbers)))
        return
    report(torch.device(args.device), args.quick, args.repeats)


if __name__ == "__main__":
    main()
