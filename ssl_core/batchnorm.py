"""BatchNorm whose statistics cover the global batch when training on several processes.

Under DDP each rank would otherwise normalise with the mean and variance of its own slice of
the batch, so a run's result would depend on how many processes share the batch, and
contrastive methods could tell a sample's rank from its statistics (SimCLR, Chen et al., 2020,
Sec. 2.3: "Global BN"). :func:`convert_batchnorm` swaps every BatchNorm layer for one that
combines the per-rank statistics exactly (Chan et al.'s parallel variance), with gradients
flowing through the combination. On CUDA it uses ``torch.nn.SyncBatchNorm`` (fused kernels,
NCCL); elsewhere (CPU with gloo) :class:`GlobalBatchNorm`. Both keep BatchNorm's state-dict keys,
so checkpoints and exported encoders load into the plain layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssl_core import distributed as D


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over ``[N, C, *]`` whose training statistics are those of every rank's samples.

    Outside a process group, or in eval mode, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects [N, C, ...] input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and D.is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0] + list(range(2, input.dim()))
        shape = [1, c] + [1] * (input.dim() - 2)
        x = input.float()
        count = torch.full((1,), float(input.numel() // max(c, 1)), device=input.device)
        mean = x.mean(dims)
        m2 = (x - mean.view(shape)).pow(2).sum(dims)
        every = D.gather_with_grad(torch.cat([count, mean, m2])[None])  # [ranks, 1 + 2C]
        counts, means, m2s = every[:, :1], every[:, 1:c + 1], every[:, c + 1:]
        n = counts.sum()
        g_mean = (counts * means).sum(0) / n
        g_var = (m2s.sum(0) + (counts * (means - g_mean).pow(2)).sum(0)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = g_var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(g_mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        y = (x - g_mean.view(shape)) * torch.rsqrt(g_var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer inside ``module`` (in place) by a global-statistics one.

    Returns ``module`` (or its replacement when ``module`` itself is a BatchNorm layer).
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                new.weight = module.weight
                new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_batchnorm(child, device)
        if new_child is not child:
            module.add_module(name, new_child)
    return module
