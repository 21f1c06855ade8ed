"""The morphs: exact ends, Gaussian-sized noise all the way, smooth steps, and the classifier's reading."""

import math

import pytest
import torch

from diffusion import SettingError, classifier_free_guidance
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.morph import MAX_FRAMES, frame_points, morph, morph_ends, morph_noise, morph_steps, slerp

PIXELS = 28 * 28
# The norm of N(0, I) in 784 dimensions: sqrt(784) = 28 give or take 1/sqrt(2) (one standard deviation).
GAUSSIAN_NORM, NORM_SD = math.sqrt(PIXELS), 1 / math.sqrt(2)
# The largest mean difference between neighbouring frames of a 16-frame walk between two seeds,
# in grey levels (0-255): measured at most 19.0 over 30 walks (each digit, seeds 100-102 to
# 200-202); the two ends of those walks differ by 12 to 48, median 29.
MAX_NEIGHBOUR_GREY_LEVELS = 20


def grey_levels(images: torch.Tensor) -> torch.Tensor:
    return (images + 1) * 127.5


def test_slerp_is_exact_at_its_ends_and_keeps_the_size_of_gaussian_noise():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 1, 28, 28, generator=generator), torch.randn(1, 1, 28, 28, generator=generator)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    for point in torch.linspace(0.05, 0.95, 19).tolist():
        norm = slerp(a, b, point).norm().item()
        assert abs(norm - GAUSSIAN_NORM) < 3 * NORM_SD, f"at {point:.2f} the noise has norm {norm:.2f}"
        assert min(a.norm(), b.norm()) - 0.01 <= norm <= max(a.norm(), b.norm()) + 0.01
    # What slerp is for: the straight line's midpoint is much smaller than Gaussian noise.
    assert ((a + b) / 2).norm().item() < GAUSSIAN_NORM - 6 * NORM_SD


def test_a_walk_between_seeds_starts_and_ends_at_their_images_and_moves_smoothly(shipped_pipeline):
    for digit, seeds in ((3, (100, 200)), (7, (101, 201)), (0, (102, 202))):
        points = frame_points(MAX_FRAMES)
        noise = morph_noise(shipped_pipeline, seeds, points)
        assert all(abs(n - GAUSSIAN_NORM) < 3 * NORM_SD for n in noise.flatten(1).norm(dim=1).tolist())
        frames = morph(shipped_pipeline, *morph_ends(shipped_pipeline, (digit, seeds[0]), (digit, seeds[1])), points)
        assert torch.equal(frames[0], shipped_pipeline.generate(shipped_pipeline.settings([digit], seed=seeds[0]))[0])
        assert torch.equal(frames[-1], shipped_pipeline.generate(shipped_pipeline.settings([digit], seed=seeds[1]))[0])
        pixels = grey_levels(frames)
        neighbours = (pixels[1:] - pixels[:-1]).abs().mean(dim=(1, 2, 3))
        ends = (pixels[-1] - pixels[0]).abs().mean()
        assert neighbours.max() <= MAX_NEIGHBOUR_GREY_LEVELS, f"digit {digit}: a jump of {neighbours.max():.1f} grey levels"
        assert neighbours.max() < ends / 2, "no single step makes most of the walk"


def test_a_walk_between_digits_is_read_as_the_first_digit_then_the_second(shipped_pipeline):
    classifier = load_classifier()
    for start, end in ((3, 8), (1, 7), (0, 6)):
        frames = morph(shipped_pipeline, *morph_ends(shipped_pipeline, (start, 0), (end, 0)), frame_points(5))
        assert torch.equal(frames[0], shipped_pipeline.generate(shipped_pipeline.settings([start], seed=0))[0])
        assert torch.equal(frames[-1], shipped_pipeline.generate(shipped_pipeline.settings([end], seed=0))[0])
        read = class_probabilities(classifier, frames).argmax(1).tolist()
        assert (read[0], read[-1]) == (start, end), f"{start} to {end} read as {read}"


def test_guidance_towards_a_mix_of_one_class_is_plain_guidance(shipped_pipeline):
    model, null = shipped_pipeline.model, shipped_pipeline.model.config.null_label
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 5, 9])
    plain = classifier_free_guidance(model, labels, 2.0, null)(x, 700)
    mixed = classifier_free_guidance(model, torch.stack([labels, torch.tensor([4, 4, 4])], 1), 2.0, null,
                                     torch.tensor([[1.0, 0.0]] * 3))(x, 700)
    torch.testing.assert_close(mixed, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("start, end, points, settings, message", [
    ((3, 1), (3, 1), [0.5], {}, "end must be a different digit or seed from the start"),
    ((3, 1), (12, 1), [0.5], {}, "digit must be an integer from 0 to 9, not 12"),
    ((3, 1), (3, -2), [0.5], {}, "seed must be an integer from 0 to 2^63-1, not -2"),
    ((3, 1), (3, 2), [1.5], {}, "points must be a non-empty list of numbers from 0 to 1"),
    ((3, 1), (3, 2), [float("nan")], {}, "points must be a non-empty list of numbers from 0 to 1"),
    ((3, 1), (3, 2), [0.5], {"sampler": "ddpm"}, "sampler must be a deterministic one (dpmpp, ddim)"),
])
def test_a_morph_the_pipeline_cannot_make_says_what_is_allowed(tiny_pipeline, start, end, points, settings, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        next(iter(morph_steps(tiny_pipeline, *morph_ends(tiny_pipeline, start, end, **settings), points)))


def test_frame_counts_are_checked():
    assert frame_points(3) == [0.0, 0.5, 1.0]
    for frames in (2, MAX_FRAMES + 1, 4.5, "9"):
        with pytest.raises(SettingError, match=f"frames must be an integer from 3 to {MAX_FRAMES}"):
            frame_points(frames)
