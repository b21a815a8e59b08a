"""Batch norm with statistics over all processes, twice differentiable (docs/distributed.md).

`torch.nn.SyncBatchNorm` refuses CPU tensors and its backward kernels have no derivative, so the
penalty's double backward would fail or drop the terms coupling images through the statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from utils.distributed import differentiable_all_reduce, is_distributed


class SyncBatchNorm(_BatchNorm):
    """`BatchNorm1d`/`2d` with global-batch statistics when training under `torchrun`, else (and
    for state-dict keys) `nn.BatchNorm`'s. Every process must call forward equally often: two
    all-reduces, the mean then the centred second moment (more accurate than E[x²] − E[x]²)."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {x.dim()}D")

    def forward(self, x: Tensor) -> Tensor:
        uses_batch_stats = self.training or self.running_mean is None
        if not (uses_batch_stats and is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        # Statistics in float32 under autocast too, as `nn.BatchNorm` computes them.
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        # The count joins the sums' all-reduce; `new_full` fills on the device (no host copy).
        local = torch.cat([xf.sum(dims), xf.new_full((1,), xf.numel() / xf.shape[1])])
        total = differentiable_all_reduce(local)
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = xf - mean.view(shape)
        var = differentiable_all_reduce(centred.square().sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        # As `nn.BatchNorm`: an exponential average with `momentum`, or the cumulative average
        # when it is None; the running variance is the unbiased one.
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every `nn.BatchNorm1d`/`2d`/`3d` replaced by `SyncBatchNorm` sharing its
    parameters and buffers (replaced in place; the root is returned, replaced if it is one)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        if module.track_running_stats:
            sync.running_mean = module.running_mean
            sync.running_var = module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        replaced = convert_sync_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
