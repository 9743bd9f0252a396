"""Multiply-accumulate counts of a network, from forward hooks on its convolutions.

Convolutions are all but a rounding error of a U-Net's arithmetic (BatchNorm, ReLU, pooling and
concatenation are memory-bound and are not counted). One MAC is one multiply plus one add, so
FLOPs = 2 x MACs.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """MACs of one Conv2d or ConvTranspose2d call with the given input and output."""
    kernel = module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.ConvTranspose2d):
        # Every input element is scattered through a (cout/groups x k x k) kernel.
        return inputs.numel() * (module.out_channels // module.groups) * kernel
    # Every output element gathers (cin/groups x k x k) inputs.
    return output.numel() * (module.in_channels // module.groups) * kernel


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on a zero tensor of ``input_shape``."""
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += conv_macs(module, args[0], output)

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        was_training = model.training
        model.eval()
        model(torch.zeros(input_shape))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total
