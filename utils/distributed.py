"""Data-parallel training over `torchrun` processes (NCCL on GPUs, gloo on the CPU), built so that a
run's numbers do not depend on the process count W and a checkpoint resumes on any W
(docs/distributed.md). Plain ``python3`` (no ``WORLD_SIZE``) is one process and uses none of it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.constants import default_pg_nccl_timeout, default_pg_timeout
from torch.distributed.nn.functional import all_reduce as _autograd_all_reduce
from torch.distributed.rendezvous import rendezvous

from utils.cli import TrainingError

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
    """Join the process group of a `torchrun` launch and return this process's device
    (``cuda:LOCAL_RANK`` on GPUs); one process joins none unless `FORCE_PROCESS_GROUP` is set."""
    forced = os.environ.get(FORCE_PROCESS_GROUP) == "1" and "MASTER_ADDR" in os.environ
    if shard.world == 1 and not forced:
        return device
    nccl = device.type == "cuda"
    # The store's timeout of a plain init_process_group: the backend's default.
    timeout = default_pg_nccl_timeout if nccl else default_pg_timeout
    store, rank, world = next(rendezvous("env://", timeout=timeout))
    # torchrun's agent keeps one store across --max-restarts, where a restarted group could read
    # the addresses of its killed predecessor and hang or fail; a prefix per restart separates
    # them. Only on one node do all workers share a restart count, so across nodes keys stay as is.
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

    Every process's loss uses all W·b rows, so backward all-reduces the gradient before keeping
    this process's slice; the local gradient alone would end up divided by W after averaging.
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
    """Sum of ``x`` over the processes, differentiable any number of times (batch-norm statistics
    under the penalty). torch 2.14 deprecates this public all-reduce for a private one, but it works
    on every torch this project accepts, so the warning each process would print is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional", FutureWarning)
        return _autograd_all_reduce(x)


def mean_over_processes(x: Tensor) -> Tensor:
    """Differentiable mean of ``x`` over the processes; gradients reach every process's ``x``."""
    if not is_distributed():
        return x
    return differentiable_all_reduce(x) / dist.get_world_size()


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Replace every ``.grad`` by its mean over the processes, in one flat all-reduce.

    Not `DistributedDataParallel`: the penalty's double backward breaks its hook-driven bucket
    bookkeeping (pytorch/pytorch#47562). Exact, at the cost of no overlap with ``backward``.
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
    """Give every process rank 0's weights and buffers: seeding alone agrees on one machine, not
    across machines and library builds."""
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


# What gloo and NCCL say when a process of the group is gone (it failed, or torchrun stopped it);
# other distributed errors (a timeout with every process alive, a bug) keep their traceback.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote process exited",
              "communicator was aborted")  # fmt: skip


@contextlib.contextmanager
def stopped_with_a_failed_process() -> Iterator[None]:
    """Under torchrun, a collective that fails because another process of the run is gone (its
    own error, say out of memory, is its own line) stops this one in one line as well, instead
    of a traceback about a closed connection."""
    try:
        yield
    except RuntimeError as error:
        if not (is_distributed() and any(s in str(error) for s in _PEER_GONE)):
            raise
        raise TrainingError(
            "stopped: another process of the run failed, and this one lost its connection to it "
            "(its own line says why); nothing was saved from the step under way"
        ) from error
