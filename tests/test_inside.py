"""Inside the model: the diagram says what the weights' own config says, and the feature maps come
from each level at its resolution, without changing what the model computes."""

import re

import torch

from diffusion import UNet, UNetConfig, inside

from .conftest import TINY_UNET


def test_the_diagram_is_drawn_from_the_config():
    for config in (UNetConfig(), TINY_UNET, UNetConfig(channels=(16, 32, 64, 64), image_size=32, blocks_per_level=2)):
        svg = inside.diagram(config)
        assert svg.startswith("<svg") and 'role="img"' in svg
        for side, channels in inside.levels(config):
            assert svg.count(f"{side}x{side}, {channels} channels") >= 2, (config, side)  # down and up
        assert svg.count("<rect") == 2 * len(config.channels) + 1  # each level down and up, and the middle
        label = re.search(r'aria-label="([^"]*)"', svg).group(1)
        assert "self-attention" in label and f"{config.image_size}x{config.image_size} with {config.channels[0]} channels" in label
    assert "2 ResBlocks, down" in inside.diagram(UNetConfig(blocks_per_level=2))


def test_feature_maps_come_from_every_level_and_leave_the_output_alone(shipped_pipeline):
    model = shipped_pipeline.model
    x, labels = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 7])
    before = model(x, torch.full((2,), 500), labels)
    maps = inside.feature_maps(model, x, 500, labels)
    assert list(maps) == ["down 28x28", "down 14x14", "down 7x7", "middle 7x7", "up 7x7", "up 14x14", "up 28x28"]
    for name, m in maps.items():
        side = int(name.split()[-1].split("x")[0])
        assert m.shape == (2, side, side) and m.min() == 0 and m.max() == 1, name
    assert torch.equal(model(x, torch.full((2,), 500), labels), before), "the hooks are gone, the model as it was"
    one = inside.feature_maps(model, x[:1], 500, labels[:1])
    assert all(m.shape[0] == 1 for m in one.values()), "a batch of one (which the model runs as two) gives one map"


def test_feature_maps_of_a_tiny_model():
    torch.manual_seed(0)
    maps = inside.feature_maps(UNet(TINY_UNET), torch.randn(3, 1, 28, 28), 10, torch.tensor([0, 1, 2]))
    assert [tuple(m.shape) for m in maps.values()] == [(3, 28, 28), (3, 14, 14), (3, 14, 14), (3, 14, 14), (3, 28, 28)]


def likeness(level: torch.Tensor, clean: torch.Tensor) -> float:
    """|correlation| of a feature map with the clean digit brought to its resolution (a channel's sign is arbitrary)."""
    target = torch.nn.functional.avg_pool2d(clean[None], 28 // level.shape[-1])[0, 0]
    a, b = level.flatten() - level.mean(), target.flatten() - target.mean()
    return abs(float(a @ b / (a.norm() * b.norm())))


def test_the_full_resolution_traces_the_strokes_at_little_noise_and_only_coarse_levels_at_much(shipped_pipeline):
    pipe, digits = shipped_pipeline, [8, 3, 1]
    clean = pipe.generate(pipe.settings(digits, seed=3))
    seen = {}
    for timestep in (200, 800):
        noisy, _ = pipe.denoise_in_one_step(clean, pipe.settings(digits, seed=4), timestep)
        maps = inside.feature_maps(pipe.model, noisy, timestep, torch.tensor(digits))
        seen[timestep] = {name: sum(likeness(m[i], clean[i]) for i in range(3)) / 3 for name, m in maps.items()}
    assert seen[200]["down 28x28"] > 0.7 and seen[800]["down 28x28"] < 0.3, seen
    assert seen[800]["up 14x14"] > 0.6, seen
