"""A small class-conditional U-Net that predicts the noise eps in x_t.

Layout (Ho et al. 2020, with the conditioning of Dhariwal & Nichol 2021):

    x_t --conv--> [ResBlocks] --skip--+                        +--> [ResBlocks] --conv--> eps
                      | down          |                        |        ^ up
                  [ResBlocks] --skip--+----------------------> cat ---> ...
                      | down                                   ^
                  [ResBlocks] -> ResBlock, Attention, ResBlock-+   (lowest resolution)

Every ResBlock is told the timestep t and the class label through one embedding
vector (sinusoidal timestep features + MLP, plus a learned class embedding) that
scales and shifts its normalised activations. Label `num_classes` is the extra
"null" class: training drops labels to it, so the same network also predicts the
unconditional noise that classifier-free guidance needs.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    image_size: int = 28
    image_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 128)  # one entry per resolution: 28, 14, 7
    blocks_per_level: int = 1
    embedding_dim: int = 128
    norm_groups: int = 8
    num_classes: int = 10  # digits 0-9; label 10 is the null class
    # A guidance-distilled student takes the guidance scale as an input, embedded as the timestep
    # is and added to its embedding: one evaluation gives what classifier-free guidance makes of two.
    # Here the largest scale it was taught (0: no such input, a teacher).
    guidance_input: float = 0.0

    @property
    def null_label(self) -> int:
        return self.num_classes

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        downsamplings = len(self.channels) - 1
        if self.image_size % 2**downsamplings:
            raise ValueError(f"image_size {self.image_size} is not divisible by 2^{downsamplings}")
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"every entry of channels {self.channels} must divide by norm_groups {self.norm_groups}")
        if not 0 <= self.guidance_input <= 100:
            raise ValueError(f"guidance_input {self.guidance_input} must be a scale from 0 (none) to 100")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the timestep (Vaswani et al. 2017, as in Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Linear(nn.Linear):
    """nn.Linear whose output for an image does not depend on the other images in its batch.

    The CPU's matrix multiply picks its kernel by the number of rows, and here the same row came
    out rounded differently in batches of 1, of 2 to 5 and of 6 or more: enough for a sensitive
    seed to end several grey levels apart. A request batched with others (batching.py) must get
    the image it gets alone, so outside training each output is summed on its own. These are the
    small layers on the conditioning embedding (3 ms a forward pass of 48 images here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return (x[:, None, :] * self.weight).sum(-1) + self.bias


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution whose output for an image does not depend on the other images in its batch.

    On one core the CPU's convolution takes another kernel for a batch of 16 or more (here at 7x7,
    256 to 128 channels) and rounds an image up to 4e-6 differently, as Linear's matrix multiply
    does. Outside training each image's pixels get a matrix product of their own (torch.baddbmm),
    the same whatever the batch and the threads."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        b, _, height, width = x.shape
        pixels = x.flatten(2).transpose(1, 2)  # (b, height * width, in_channels)
        out = torch.baddbmm(self.bias, pixels, self.weight.flatten(1).t().expand(b, -1, -1))
        return out.transpose(1, 2).reshape(b, -1, height, width)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.scale_shift = Linear(embedding_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = PointwiseConv(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.scale_shift(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift  # adaptive GroupNorm (Dhariwal & Nichol 2021)
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels: at 7x7 that is 49 tokens, cheap."""

    def __init__(self, channels: int, groups: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = PointwiseConv(channels, 3 * channels)
        self.out = PointwiseConv(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, height * width).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(h.transpose(-1, -2).reshape(b, c, height, width))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c, emb_dim, groups = config.channels, config.embedding_dim, config.norm_groups
        self.time_mlp = nn.Sequential(Linear(c[0], emb_dim), nn.SiLU(), Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(config.num_classes + 1, emb_dim)
        if config.guidance_input:
            self.guidance_mlp = nn.Sequential(Linear(c[0], emb_dim), nn.SiLU(), Linear(emb_dim, emb_dim))
            nn.init.zeros_(self.guidance_mlp[-1].weight)  # a new student starts as its teacher, conditional
            nn.init.zeros_(self.guidance_mlp[-1].bias)

        self.conv_in = nn.Conv2d(config.image_channels, c[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, channels in enumerate(c):
            in_channels = c[max(level - 1, 0)]
            blocks = [ResBlock(in_channels if i == 0 else channels, channels, emb_dim, groups)
                      for i in range(config.blocks_per_level)]
            self.down.append(nn.ModuleList(blocks))
            if level < len(c) - 1:
                self.downsample.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))

        self.mid1 = ResBlock(c[-1], c[-1], emb_dim, groups)
        self.mid_attention = SelfAttention(c[-1], groups)
        self.mid2 = ResBlock(c[-1], c[-1], emb_dim, groups)

        # Going up, each level takes its skip connection concatenated to the input.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, channels in enumerate(c):
            blocks = [ResBlock(2 * channels if i == 0 else channels, channels, emb_dim, groups)
                      for i in range(config.blocks_per_level)]
            self.up.append(nn.ModuleList(blocks))
            if level > 0:
                self.upsample.append(nn.Conv2d(channels, c[level - 1], 3, padding=1))

        self.norm_out = nn.GroupNorm(groups, c[0])
        self.conv_out = nn.Conv2d(c[0], config.image_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in x (B, C, H, W) at integer timesteps t (B,) for class labels (B,);
        a student (config.guidance_input) predicts it as guided at scales guidance (B,), 1 if None."""
        if len(x) == 1:  # convolutions take another path for a batch of one, and round differently: see Linear
            twice = None if guidance is None else guidance.repeat(2)
            return self.forward(x.repeat(2, 1, 1, 1), t.repeat(2), labels.repeat(2), twice)[:1]
        emb = self.time_mlp(timestep_embedding(t, self.config.channels[0])) + self.class_embedding(labels)
        if self.config.guidance_input:
            scales = torch.ones(len(x), device=x.device) if guidance is None else guidance
            # Scales 0 to 10 spread over the sinusoids as timesteps 0 to 1000 do.
            emb = emb + self.guidance_mlp(timestep_embedding(scales * 100, self.config.channels[0]))

        h = self.conv_in(x)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)

        h = self.mid2(self.mid_attention(self.mid1(h, emb)), emb)

        for level in reversed(range(len(self.up))):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in self.up[level]:
                h = block(h, emb)
            if level > 0:
                h = self.upsample[level - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))

        return self.conv_out(F.silu(self.norm_out(h)))
