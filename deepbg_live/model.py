"""The U-Net: one definition, used by the runtime, training, export and benchmarks.

The network is assembled from four small blocks (``DoubleConv``, ``DepthwiseDoubleConv``,
``Down``, ``Up``) so that a config only chooses widths and block types. It takes a normalised RGB
batch ``(N, 3, H, W)`` of any size and returns person logits ``(N, 1, H, W)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ImageNet statistics, applied to RGB in [0, 1]. The only place normalisation is defined.
NORM_MEAN = (0.485, 0.456, 0.406)
NORM_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a U-Net: encoder widths are ``base * 2**level`` for ``depth`` levels."""

    name: str
    base: int = 8
    depth: int = 4
    block: str = "classic"  # "classic" (3x3 convs) or "depthwise" (separable convs)
    long_side: int = 192  # inference resolution: the frame's long side is resized to this
    context: bool = False  # add a whole-image context block at the bottleneck
    bottleneck_blocks: int = 0  # extra residual blocks at the coarsest level, for semantic depth

    @property
    def stride(self) -> int:
        return 2**self.depth


CONFIGS: dict[str, ModelConfig] = {
    # The original project's network: 64-128-256-512 features plus a 1024 bottleneck, for GPUs.
    "classic": ModelConfig("classic", base=64, depth=4, block="classic", long_side=256),
    # Real-time CPU configs, both shipped: "realtime" is the default, "fast" is for slower CPUs.
    "realtime": ModelConfig(
        "realtime", base=16, depth=4, block="classic", long_side=224, context=True, bottleneck_blocks=2
    ),
    "fast": ModelConfig("fast", base=8, depth=4, block="classic", long_side=192),
    "depthwise16": ModelConfig("depthwise16", base=16, depth=4, block="depthwise", long_side=192),
    "depthwise8": ModelConfig("depthwise8", base=8, depth=4, block="depthwise", long_side=192),
}
DEFAULT_CONFIG = "realtime"


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, groups: int = 1) -> list[nn.Module]:
    """A convolution followed by batch norm and ReLU, the unit every block is made of."""
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers: the original U-Net's building block."""

    def __init__(self, cin: int, cout: int):
        super().__init__(*conv_bn_relu(cin, cout), *conv_bn_relu(cout, cout))


class DepthwiseDoubleConv(nn.Sequential):
    """Two depthwise-separable conv layers: about 8x fewer multiply-adds than ``DoubleConv``."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            *conv_bn_relu(cin, cin, groups=cin),
            *conv_bn_relu(cin, cout, kernel=1),
            *conv_bn_relu(cout, cout, groups=cout),
            *conv_bn_relu(cout, cout, kernel=1),
        )


BLOCKS = {"classic": DoubleConv, "depthwise": DepthwiseDoubleConv}


class Down(nn.Sequential):
    """Halve the resolution with max-pooling, then apply a conv block."""

    def __init__(self, cin: int, cout: int, block: type[nn.Module]):
        super().__init__(nn.MaxPool2d(2), block(cin, cout))


class Up(nn.Module):
    """Double the resolution with a transposed conv, concatenate the skip, apply a conv block."""

    def __init__(self, cin: int, cout: int, block: type[nn.Module]):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        self.conv = block(cout * 2, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class GlobalContext(nn.Module):
    """Add a summary of the whole image to every position of a feature map.

    Deciding whether a region belongs to *the* person (not a dog or a plate beside them) needs
    more than a local view. The last conv starts at zero, so the block begins as the identity and
    weights trained without it load unchanged.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1)
        )
        nn.init.zeros_(self.mix[-1].weight)
        nn.init.zeros_(self.mix[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x.mean(dim=(2, 3), keepdim=True))


class ResidualBlock(nn.Module):
    """``x + conv-BN-ReLU-conv-BN(x)``: more depth where the feature map is smallest.

    At 1/16 of the input resolution these 3x3 convs see most of the frame, which is what telling
    a person from a person-shaped object needs; the inner width is halved to halve their cost.
    The last BN's scale starts at zero, so the block begins as the identity and weights trained
    without it load unchanged.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(channels, channels // 2),
            nn.Conv2d(channels // 2, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UNet(nn.Module):
    """Encoder-decoder with skip connections, returning one logit channel per pixel.

    Inputs whose sides are not multiples of ``config.stride`` are padded (by reflection, so
    no artificial border is introduced) and the output is cropped back to the input size.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        block = BLOCKS[config.block]
        widths = [config.base * 2**i for i in range(config.depth + 1)]
        self.stem = DoubleConv(3, widths[0])  # a full conv first: RGB has too few channels
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], block) for i in range(config.depth))
        self.bottleneck = nn.Sequential(*(ResidualBlock(widths[-1]) for _ in range(config.bottleneck_blocks)))
        self.context = GlobalContext(widths[-1]) if config.context else nn.Identity()
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], block) for i in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.config.stride)
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = self.context(self.bottleneck(skips.pop()))
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)[..., :height, :width]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right of ``x`` so both sides are multiples of ``multiple``."""
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def long_side_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``(w, h)`` scaled so the longer side is ``long_side``, keeping the aspect ratio.

    The one definition of "resize to a long side": training, inference and refinement all use it,
    so the scale the model was trained at is exactly the scale it runs at.
    """
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def build_model(config: str | ModelConfig = DEFAULT_CONFIG) -> UNet:
    """Create an untrained U-Net from a config name or a ``ModelConfig``."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown model config {config!r}; choose one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    return UNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- weights files -------------------------------------------------------------------------
# Weights are stored as safetensors with the config as JSON metadata: loading them can never
# execute code, unlike a pickled checkpoint.


def save_weights(model: UNet, path: str | Path, half: bool = False, **metadata: str) -> None:
    """Write ``model``'s weights and config to a ``.safetensors`` file."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value
    meta = {"config": json.dumps(asdict(model.config)), **metadata}
    save_file(tensors, str(path), metadata=meta)


def load_weights(path: str | Path) -> tuple[UNet, dict[str, str]]:
    """Load a U-Net from a ``.safetensors`` file or a training checkpoint ``.pt``.

    ``.pt`` files are read with ``torch.load(weights_only=True)``, which refuses pickled code.
    Returns the model in eval mode, in float32, and the file's metadata.
    """
    path = Path(path)
    if path.suffix == ".pt":
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = ModelConfig(**json.loads(checkpoint["config"]))
        state = checkpoint["model"]
        metadata = {k: v for k, v in checkpoint.items() if isinstance(v, str)}
    else:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        if "config" not in metadata:
            raise ValueError(f"{path} has no model config in its metadata; is it a deepbg-live model?")
        config = ModelConfig(**json.loads(metadata["config"]))
        state = load_file(str(path))
    model = UNet(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval(), metadata


def normalise(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(H, W, 3)`` or ``(N, H, W, 3)`` to a normalised float ``(N, 3, H, W)`` tensor."""
    x = torch.as_tensor(rgb)
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(NORM_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(NORM_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
