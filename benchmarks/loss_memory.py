"""The peak memory of NT-Xent's forward and backward on the CPU, the project's matmul form
(`models.invclr.nt_xent`) against the pairwise broadcast form often written, each in a fresh
process; `benchmarks/throughput.py --loss-memory B` reports it."""

from __future__ import annotations

import multiprocessing
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from models.invclr import nt_xent


def pairwise_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent through a broadcast (2N, 2N, D) cosine similarity, as it is often written."""
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    sim = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(sim, torch.arange(2 * n, device=z.device).roll(n))


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_added_mib(work: Callable[[], Any]) -> tuple[float, Any]:
    """The peak resident memory (MiB, Linux /proc, sampled every 0.2 ms by a thread while torch
    runs without the GIL) that ``work()`` adds to the process, and what it returned. Run it in a
    fresh process: memory an earlier call freed would hide in the allocator."""
    before = _resident_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_mib())
            time.sleep(2e-4)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = work()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _resident_mib()) - before, result


def _peak_loss_memory(kind: str, batch: int, queue) -> None:
    """In a fresh process: the peak memory one forward and backward of the loss adds."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(batch, 128, generator=gen, requires_grad=True)
    z2 = torch.randn(batch, 128, generator=gen, requires_grad=True)
    loss_fn = nt_xent if kind == "matmul" else pairwise_nt_xent
    queue.put(peak_added_mib(lambda: loss_fn(z1, z2, 0.5).backward())[0])


def loss_memory(batch: int) -> dict[str, float | None]:
    """Peak MiB of NT-Xent at ``batch`` (matmul form) and of the pairwise form. The pairwise form
    needs (2B)²·128 floats per intermediate, beyond this machine's memory at large B; it is
    measured at B/4 and B/8 and scaled to B by the growth measured between them (recorded as
    such)."""
    ctx = multiprocessing.get_context("spawn")

    def measure(kind: str, b: int) -> float:
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_loss_memory, args=(kind, b, queue))
        proc.start()
        value = queue.get()
        proc.join()
        return value

    result = {"batch": batch, "matmul_mib": measure("matmul", batch)}
    quarter, eighth = measure("pairwise", batch // 4), measure("pairwise", batch // 8)
    growth = quarter / eighth if eighth > 0 else 4.0
    result.update(
        pairwise_mib_at_quarter=quarter,
        pairwise_mib_at_eighth=eighth,
        pairwise_mib_extrapolated=quarter * growth**2,
    )
    return result
