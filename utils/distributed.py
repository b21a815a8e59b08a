"""Data-parallel training across processes started by `torchrun` (one per GPU, or several CPU
processes with the gloo backend).

The design keeps a run the same whatever the number of processes W: ``--batch-size`` is the global
batch B, every process draws the random parameters of the whole global batch from the same seeded
generator and keeps its own rows (`Shard`), NT-Xent is computed on the projections of all B
images (`gather_rows`), batch norm sees all B images (`models.sync_batchnorm`), and the gradients
are averaged (`average_gradients`). One process given the same B images computes the same loss,
penalty and gradients; so a checkpoint resumes on any W.

Plain ``python3`` (no ``WORLD_SIZE`` in the environment) is one process and touches none of this.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.constants import default_pg_nccl_timeout, default_pg_timeout
from torch.distributed.nn.functional import all_reduce as _autograd_all_reduce
from torch.distributed.rendezvous import rendezvous

T = TypeVar("T", Tensor, tuple[Tensor, ...])


@dataclass(frozen=True)
class Shard:
    """This process's rows of a global batch: rows [rank·b, (rank+1)·b) of B = world·b."""

    rank: int = 0
    world: int = 1

    def rows(self, x: Tensor, dim: int = 0) -> Tensor:
        """This process's share of ``x``, whose size along ``dim`` is the global batch."""
        if self.world == 1:
            return x
        if x.shape[dim] % self.world:
            raise ValueError(f"{x.shape[dim]} rows do not split evenly among {self.world}")
        b = x.shape[dim] // self.world
        return x.narrow(dim, self.rank * b, b)

    def draw(self, sampler: Callable[[int], T], local: int) -> T:
        """``sampler(world·local)``, the draw one process would make for the global batch, cut
        to this process's rows; every process consumes its generator identically."""
        drawn = sampler(local * self.world)
        if isinstance(drawn, tuple):
            return tuple(self.rows(t) for t in drawn)
        return self.rows(drawn)


ONE_PROCESS = Shard()


def launched_shard() -> Shard:
    """The rank and world size `torchrun` put in the environment; one process without it."""
    return Shard(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


# Set to 1 to join a process group even with one process (`torchrun --nproc_per_node 1`): the
# GPU check uses it to initialise NCCL on a one-GPU machine.
FORCE_PROCESS_GROUP = "INVCLR_FORCE_PROCESS_GROUP"


def init_distributed(shard: Shard, device: torch.device) -> torch.device:
    """Join the process group of a `torchrun` launch (NCCL on GPUs, gloo on the CPU) and return
    this process's device: ``cuda:LOCAL_RANK`` on GPUs. One process: nothing to join, unless
    the environment sets ``INVCLR_FORCE_PROCESS_GROUP=1`` (under `torchrun`)."""
    forced = os.environ.get(FORCE_PROCESS_GROUP) == "1" and "MASTER_ADDR" in os.environ
    if shard.world == 1 and not forced:
        return device
    nccl = device.type == "cuda"
    # The store's timeout of a plain init_process_group: the backend's default.
    timeout = default_pg_nccl_timeout if nccl else default_pg_timeout
    store, rank, world = next(rendezvous("env://", timeout=timeout))
    # torchrun's agent keeps one store across the restarts of --max-restarts, so a restarted
    # group could read the addresses its killed predecessor published there (and fail to
    # connect, or wait out the timeout); a prefix per restart keeps each attempt's keys its own.
    # On one node the agent's restart count is every worker's; across nodes the agents count
    # apart, so there the keys stay as torch sets them.
    if os.environ.get("LOCAL_WORLD_SIZE") == str(world):
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"restart{restart}", store)
    if nccl:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", store=store, rank=rank, world_size=world, device_id=device)
    else:
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    if forced:
        dist.barrier()  # one collective, so that a forced one-process group is shown to work
    return device


def process_group_backend() -> str | None:
    """The backend of the process group this process joined (nccl, gloo), or None."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherRows(torch.autograd.Function):
    """All processes' (b, ...) tensors stacked into (W·b, ...), in rank order.

    Every process computes its loss on all W·b rows, so the gradient reaching this process's rows
    is the sum of the W processes' gradients for them: backward all-reduces the full gradient
    and keeps this process's slice. (Keeping only the local gradient, without that sum, is the
    classic bug: after gradient averaging it divides the contrastive gradient by W.)
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.narrow(0, ctx.rank * ctx.rows, ctx.rows)


def gather_rows(x: Tensor) -> Tensor:
    """(b, ...) on each process -> (W·b, ...) everywhere, differentiable; ``x`` itself alone."""
    return _GatherRows.apply(x) if is_distributed() else x


def differentiable_all_reduce(x: Tensor) -> Tensor:
    """Sum of ``x`` over the processes; its backward is the same sum, itself differentiable, so
    autograd goes through it as many times as asked (batch-norm statistics under the penalty).

    torch 2.14 marks `torch.distributed.nn.functional.all_reduce` deprecated in favour of the
    private `torch.distributed._functional_collectives`; the public one still works, across the
    torch versions this project accepts, so its notice (printed by every process) is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional", FutureWarning)
        return _autograd_all_reduce(x)


def mean_over_processes(x: Tensor) -> Tensor:
    """Differentiable mean of ``x`` over the processes: the gradient of each process's copy of
    the result flows back to every process's ``x``."""
    if not is_distributed():
        return x
    return differentiable_all_reduce(x) / dist.get_world_size()


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Replace every ``.grad`` by its mean over the processes, in one flat all-reduce.

    `DistributedDataParallel` is not used: its reducer reduces a gradient bucket when autograd
    hooks report its parameters ready, and the penalty's double backward (and the two encoder
    forwards per step) break that bookkeeping (pytorch/pytorch#47562 reports wrong gradients for
    gradient penalties under DDP). Averaging after ``backward`` is exact, at the cost of not
    overlapping communication with the backward pass.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view(g.shape))
        offset += g.numel()


def broadcast_parameters(modules: list[torch.nn.Module]) -> None:
    """Give every process rank 0's weights and buffers (seeded initialisation already agrees on
    one machine; this makes it hold across machines and library builds too)."""
    if not is_distributed():
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def any_process(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process (a collective: every process must call it)."""
    if not is_distributed():
        return flag
    t = torch.tensor(int(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)
