"""The figures on drawing and repairing in docs/edits-and-morphs.md,
measured on the shipped weights with MNIST's test digits standing in for drawings.

    MNIST_ROOT=../shared/data python -m tests.edit_survey        # about 2 minutes on 2 CPU cores

Draw: the first 50 test digits of each class, each made to look drawn with a mouse or finger in
one of the DEGRADATIONS below, on a 280 x 280 white canvas, brought in with to_model_input and
finished at the default strength towards its true class. Repair: the same digits with their
bottom (then left) half masked and filled in towards their true class. The classifier reads
the results; tests/test_edit.py asserts the issue's thresholds on the same figures.
"""


import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from diffusion import Pipeline
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.data import default_data_dir, load_mnist, to_model_range
from diffusion.edit import draw_settings, draw_steps, repair_steps, to_model_input
from diffusion.samplers import final_image

PER_DIGIT = 50
CANVAS = 280  # px: the digit drawn at 10x, as on the app's canvas
BATCH = 250


def first_of_each_digit(root: str, per_digit: int = PER_DIGIT) -> tuple[torch.Tensor, torch.Tensor]:
    """The first per_digit test digits of each class, uint8 (N, 28, 28), and their labels."""
    images, labels = load_mnist(root, train=False)
    chosen = torch.cat([torch.nonzero(labels == d)[:per_digit, 0] for d in range(10)])
    return images[chosen], labels[chosen]


def on_canvas(strokes: torch.Tensor) -> Image.Image:
    """Ink (H, W) in [0, 1] as a drawing: black strokes, fully dark where inked, on white paper."""
    binary = (strokes > 0.5).float()
    return Image.fromarray(((1 - binary) * 255).to(torch.uint8).numpy())


def enlarged(digit: torch.Tensor) -> torch.Tensor:
    """A 28 x 28 uint8 digit as ink (CANVAS, CANVAS) in [0, 1], smoothly enlarged 10x."""
    return F.interpolate(digit[None, None].float() / 255, size=(CANVAS, CANVAS), mode="bicubic")[0, 0].clamp(0, 1)


def pen(strokes: torch.Tensor, width_change: int) -> torch.Tensor:
    """Strokes grown (or thinned, for a negative change) by width_change px a side."""
    x = strokes[None, None]
    for _ in range(abs(width_change)):
        x = F.max_pool2d(x, 3, 1, 1) if width_change > 0 else -F.max_pool2d(-x, 3, 1, 1)
    return x[0, 0]


def thick_marker(digit, generator):
    """A fat brush: strokes about twice MNIST's width, black and white."""
    return on_canvas(pen(enlarged(digit), 12))


def thin_line(digit, generator):
    """A thin pen or a mouse at its smallest: strokes about half of MNIST's width."""
    return on_canvas(pen(enlarged(digit), -5))


def shaky_hand(digit, generator):
    """Wobbly strokes: a smooth random displacement of up to about 4% of the canvas."""
    field = F.interpolate(torch.randn(1, 2, 4, 4, generator=generator), size=(CANVAS, CANVAS), mode="bicubic")
    grid = F.affine_grid(torch.eye(2, 3)[None], (1, 1, CANVAS, CANVAS), align_corners=False)
    moved = F.grid_sample(enlarged(digit)[None, None], grid + 0.06 * field.permute(0, 2, 3, 1), align_corners=False)
    return on_canvas(moved[0, 0])


def tilted(digit, generator):
    """Written at a slant: turned by 10 to 20 degrees either way, black and white."""
    angle = (10 + 10 * torch.rand(1, generator=generator).item()) * (1 if torch.rand(1, generator=generator) < 0.5 else -1)
    turned = Image.fromarray(enlarged(digit).numpy()).rotate(angle, resample=Image.Resampling.BICUBIC)
    return on_canvas(torch.from_numpy(np.array(turned)))


DEGRADATIONS = {"thick marker": thick_marker, "thin line": thin_line, "shaky hand": shaky_hand, "tilted": tilted}


def draw_results(pipe: Pipeline, images: torch.Tensor, labels: torch.Tensor, degradation: str,
                 seed: int = 0) -> torch.Tensor:
    """The finished digits of the drawings made from images with a degradation (N, 1, 28, 28)."""
    generator = torch.Generator().manual_seed(seed)
    drawings = torch.cat([to_model_input(DEGRADATIONS[degradation](digit, generator))[0] for digit in images])
    return torch.cat([final_image(draw_steps(pipe, drawings[i:i + BATCH], draw_settings(pipe, labels[i:i + BATCH].tolist(), seed)))
                      for i in range(0, len(drawings), BATCH)])


def half_masks(count: int, half: str) -> torch.Tensor:
    """Masks (count, 1, 28, 28), True over the bottom or the left half."""
    mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    if half == "bottom":
        mask[..., 14:, :] = True
    else:
        mask[..., :14] = True
    return mask.repeat(count, 1, 1, 1)


def repair_results(pipe: Pipeline, images: torch.Tensor, labels: torch.Tensor, half: str,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(the digits with half masked and refilled, the masks), both (N, 1, 28, 28)."""
    originals, masks = to_model_range(images), half_masks(len(images), half)
    repaired = torch.cat([final_image(repair_steps(pipe, originals[i:i + BATCH], masks[i:i + BATCH],
                                                pipe.settings(labels[i:i + BATCH].tolist(), seed)))
                          for i in range(0, len(originals), BATCH)])
    return repaired, masks


def read_as(classifier, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, int, float]:
    """(share read as their label, the worst digit, its share)."""
    right = class_probabilities(classifier, images).argmax(1) == labels
    per_digit = torch.stack([right[labels == d].float().mean() for d in range(10)])
    return right.float().mean().item(), int(per_digit.argmin()), per_digit.min().item()


def kept_change(repaired: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> float:
    """The largest change, in grey levels 0-255, of a kept pixel."""
    return ((repaired - to_model_range(images)).abs() * 127.5)[~masks].max().item()


def main() -> None:
    pipe, classifier = Pipeline.load(), load_classifier()
    images, labels = first_of_each_digit(default_data_dir())
    print(f"{len(images)} MNIST test digits ({PER_DIGIT} of each class), seed 0, default settings")
    for degradation in DEGRADATIONS:
        share, worst, worst_share = read_as(classifier, draw_results(pipe, images, labels, degradation), labels)
        print(f"draw, {degradation}: read as asked {share:.1%} (worst digit {worst}: {worst_share:.0%})")
    for half in ("bottom", "left"):
        repaired, masks = repair_results(pipe, images, labels, half)
        share, worst, worst_share = read_as(classifier, repaired, labels)
        print(f"repair, {half} half: read as asked {share:.1%} (worst digit {worst}: {worst_share:.0%}), "
              f"kept pixels changed by at most {kept_change(repaired, images, masks):.2g} grey levels")


if __name__ == "__main__":
    main()
