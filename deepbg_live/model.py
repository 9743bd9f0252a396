"""The segmentation networks: one definition, used by the runtime, training, export and benchmarks.

Two families share one contract: a normalised RGB batch ``(N, 3, H, W)`` of any size in, person
logits ``(N, 1, H, W)`` out. A config with ``previous_mask`` takes a fourth input channel, the
previous frame's person probability (0..1; ``prior.NEUTRAL`` everywhere when there is none), as
Google Meet's segmentation model does for steadier video.

- ``UNet``, the classic encoder-decoder, assembled from ``DoubleConv``, ``DepthwiseDoubleConv``,
  ``Down`` and ``Up`` so that a config only chooses widths and block types.
- ``MobileUNet``, the CPU-efficient family: a stride-2 stem, inverted-residual stages down to 1/32,
  a global gate, and a light decoder that stops at 1/4 and leaves full-resolution edges to the
  guided-filter refiner.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepbg_live.preprocess import NORM_MEAN, NORM_STD


class Block(str, Enum):
    """The classic U-Net's conv block; a str so that configs stay plain JSON."""

    CLASSIC = "classic"  # two 3x3 convs
    DEPTHWISE = "depthwise"  # two depthwise-separable convs


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a network: a classic U-Net (widths ``base * 2**level`` for ``depth`` levels) or,
    when ``widths`` is given, a MobileUNet.

    A config is checked when it is made, so a hostile weights file that asks for a huge network
    is refused before anything is allocated.
    """

    name: str
    base: int = 8
    depth: int = 4
    block: Block = Block.CLASSIC
    long_side: int = 192  # inference resolution: the frame's long side is resized to this
    context: bool = False  # add a whole-image context block at the bottleneck
    bottleneck_blocks: int = 0  # extra residual blocks at the coarsest level, for semantic depth
    # The MobileUNet family is chosen by giving its stage widths; the fields above it ignores,
    # except ``long_side``. ``widths[0]`` is the stem's, the rest one per stride-2 stage.
    widths: tuple[int, ...] = ()
    stage_depths: tuple[int, ...] = ()
    expansion: int = 4
    decoder_stride: int = 4  # the resolution the decoder stops at: 1/2 or 1/4 of the input
    previous_mask: bool = False  # a 4th input channel: the previous frame's probability

    def __post_init__(self):
        # JSON stores tuples as lists; keep the config hashable and comparable either way.
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "stage_depths", tuple(self.stage_depths))
        object.__setattr__(self, "block", Block(self.block))
        out_of_range = [name for name, ok in self._limits().items() if not ok]
        if out_of_range:
            raise ValueError(f"model config {self.name!r} is out of range: {', '.join(out_of_range)}")

    def _limits(self) -> dict[str, bool]:
        """Each field's sane range: far beyond any real model, far below what exhausts memory."""
        numbers = (self.base, self.depth, self.long_side, self.bottleneck_blocks, self.expansion)
        numbers += self.widths + self.stage_depths + (self.decoder_stride,)
        if not all(isinstance(n, int) for n in numbers):
            return {"integer sizes": False}
        return {
            "long_side 16..2048": 16 <= self.long_side <= 2048,
            "base 1..128": 1 <= self.base <= 128,
            "depth 1..6": 1 <= self.depth <= 6,
            "base * 2**depth <= 2048": self.base * 2**self.depth <= 2048,
            "bottleneck_blocks 0..16": 0 <= self.bottleneck_blocks <= 16,
            "widths: up to 7 of 1..1024": len(self.widths) <= 7 and all(1 <= w <= 1024 for w in self.widths),
            "one stage depth 1..16 per stage": (
                len(self.stage_depths) == max(0, len(self.widths) - 1)
                and all(1 <= d <= 16 for d in self.stage_depths)
            ),
            "expansion 1..12": 1 <= self.expansion <= 12,
            "decoder_stride 2 or 4": self.decoder_stride in (2, 4),
        }

    def same_network(self, other: ModelConfig) -> bool:
        """True when ``other`` describes the same network, whatever either is called."""
        return replace(self, name=other.name) == other

    @property
    def is_mobile(self) -> bool:
        return bool(self.widths)

    @property
    def in_channels(self) -> int:
        return 4 if self.previous_mask else 3

    @property
    def stride(self) -> int:
        return 2 ** len(self.widths) if self.is_mobile else 2**self.depth


# The CPU-efficient family (model v2 candidates); MODEL_CARD.md has their measured costs.
MOBILE = ModelConfig(
    "mobile", long_side=256, widths=(16, 24, 32, 64, 96), stage_depths=(1, 2, 3, 3), expansion=4
)
MOBILE_WIDE = replace(MOBILE, name="mobile-wide", widths=(16, 24, 40, 80, 128), expansion=6)
# "mobile" that also sees its previous output (trained with perturbed copies of the truth). Shipped
# as "fast" since run v2-5: more accurate than the U-Net that was "fast" before it, at half its time.
MOBILE_VIDEO = replace(MOBILE, name="mobile-video", previous_mask=True)

CONFIGS: dict[str, ModelConfig] = {
    # The original project's network: 64-128-256-512 features plus a 1024 bottleneck, for GPUs.
    "classic": ModelConfig("classic", base=64, depth=4, block=Block.CLASSIC, long_side=256),
    # The two shipped configs: "realtime" is the default, "fast" is for slower CPUs and the live fallback.
    "realtime": ModelConfig(
        "realtime", base=16, depth=4, block=Block.CLASSIC, long_side=224, context=True, bottleneck_blocks=2
    ),
    "fast": replace(MOBILE_VIDEO, name="fast"),
    # The base-8 U-Net shipped as "fast" until session 17.
    "unet8": ModelConfig("unet8", base=8, depth=4, block=Block.CLASSIC, long_side=192),
    "depthwise16": ModelConfig("depthwise16", base=16, depth=4, block=Block.DEPTHWISE, long_side=192),
    "depthwise8": ModelConfig("depthwise8", base=8, depth=4, block=Block.DEPTHWISE, long_side=192),
    "mobile": MOBILE,
    "mobile-video": MOBILE_VIDEO,
    "mobile-wide": MOBILE_WIDE,
    # "mobile-wide" with the previous-mask channel: 2.4x the parameters for about MediaPipe's cost
    "mobile-wide-video": replace(MOBILE_WIDE, name="mobile-wide-video", previous_mask=True),
    # "mobile-video" two blocks deeper at 1/16 and 1/32, where semantics are decided at little cost;
    # it grows onto "fast" weights without changing their output.
    "mobile-deep-video": replace(MOBILE_VIDEO, name="mobile-deep-video", stage_depths=(1, 2, 5, 5)),
    # "mobile-video" wider at every stage from 1/4 down (1.5x its time, still under MediaPipe
    # selfie's); it grows onto "fast" weights without changing their output.
    "mobile-broad-video": replace(MOBILE_VIDEO, name="mobile-broad-video", widths=(16, 32, 48, 80, 112)),
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


BLOCKS = {Block.CLASSIC: DoubleConv, Block.DEPTHWISE: DepthwiseDoubleConv}


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


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise (maybe strided), 1x1 project, plus a skip.

    Depthwise convs make it cheap to run; the expansion gives the depthwise conv enough channels
    to learn from. The skip exists only where input and output shapes match, and there the last
    BN starts at zero: the block begins as the identity, so a stage can grow deeper on trained
    weights without changing their output.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 4):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            *conv_bn_relu(cin, hidden, kernel=1),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        if self.residual:
            nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def inverted_residual_stage(cin: int, cout: int, depth: int, expansion: int) -> nn.Sequential:
    """``depth`` inverted-residual blocks, the first halving the resolution."""
    blocks = [InvertedResidual(cin, cout, stride=2, expansion=expansion)]
    blocks += [InvertedResidual(cout, cout, expansion=expansion) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class GlobalGate(nn.Module):
    """Squeeze-and-excitation: reweight channels by a summary of the whole image.

    At 1/32 scale this is the network's only view of the entire frame, what deciding whether a
    region is the person (not a chair or a dog beside them) needs.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(2, 3), keepdim=True))


class LightUp(nn.Module):
    """Upsample to the skip's size and add it (both projected to ``cout``), then a separable conv.

    Adding instead of concatenating, and projecting the coarse input before upsampling, keeps
    the decoder a small share of the network's cost.
    """

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.reduce = nn.Sequential(*conv_bn_relu(cin, cout, kernel=1))
        self.skip = nn.Sequential(*conv_bn_relu(cskip, cout, kernel=1))
        self.fuse = nn.Sequential(*conv_bn_relu(cout, cout, groups=cout), *conv_bn_relu(cout, cout, kernel=1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(x + self.skip(skip))


class MobileUNet(nn.Module):
    """Inverted-residual encoder to 1/32 and a light decoder to ``decoder_stride``.

    The logits are upsampled bilinearly to the input size, so the runtime and training see the
    same contract as ``UNet``; full-resolution detail is the edge refiner's job.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = config.widths
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.ModuleList(
            inverted_residual_stage(widths[i], widths[i + 1], depth, config.expansion)
            for i, depth in enumerate(config.stage_depths)
        )
        self.gate = GlobalGate(widths[-1])
        # Feature map k is at 1/2**(k+1) of the input; the decoder climbs back to map ``stop``.
        stop = int(np.log2(config.decoder_stride)) - 1
        self.ups = nn.ModuleList(
            LightUp(widths[k + 1], widths[k], widths[k]) for k in reversed(range(stop, len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[stop], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.config.stride)
        skips = [self.stem(x)]
        for stage in self.stages:
            skips.append(stage(skips[-1]))
        y = self.gate(skips.pop())
        for up in self.ups:
            y = up(y, skips.pop())
        logits = F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]


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
        self.stem = DoubleConv(config.in_channels, widths[0])  # a full conv first: RGB has too few channels
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


def build_model(config: str | ModelConfig = DEFAULT_CONFIG) -> UNet | MobileUNet:
    """Create an untrained network from a config name or a ``ModelConfig``."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown model config {config!r}; choose one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    return MobileUNet(config) if config.is_mobile else UNet(config)


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
    if path.suffix.lower() == ".pt":
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
    model = build_model(config)
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
