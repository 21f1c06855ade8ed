"""The hand a digit is written in: slant, stroke width and size, measured on 28x28 digits.

    measures(images)                   # (N, 3): slant in degrees, stroke width and size in pixels
    hand(images, digits)               # the same, less the typical digit's (MNIST_MEANS): the hand itself
    spread(hands), distance(hands, h)  # how much hands vary; how far from a hand, in people's spreads

Each measure is computed from the ink, u = (image + 1) / 2 in [0, 1], so that a reader can check it
by hand on a constructed stroke (tests/test_write.py draws bars of known slant and width):

- slant: the shear of the ink's second moments, mu11 / mu02 (x moved per pixel down), as the
  angle from upright; positive leans right, as italic does. MNIST's own deskewing measures it so.
- stroke width: the width of a rectangle with the ink's area A = sum(u) and the length of its
  outline P = sum(|grad u|) (by the coarea formula, the mean outline length over ink levels): a
  stroke of length L and width w has A = L w and P = 2 (L + w), so w is the smaller root of
  w^2 - (P / 2) w + A = 0. Exact for a straight bar, ends included.
- size: the side of the square with the area of the ink's bounding box (pixels with u >= 0.5).

Digits differ by their shape alone: by second moments a typical 1 leans 12 degrees, a typical 9
not at all. A hand is what a digit's measures add to its own digit's typical ones, so that a 1
and a 9 written by the same person have about the same hand.

`towards` moves images to a hand, by a shear (slant) and a partial dilation or erosion (stroke
width): write.py applies it to the model's estimate of the clean digits while they form.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

MEASURES = ("slant", "stroke width", "size")
UNITS = ("°", " px", " px")
# Over MNIST's 10,000 test digits (`python -m tests.write_survey --mnist`): each digit's mean
# measures, 0 to 9, and how much hands vary (the standard deviation of each measure less its digit's
# mean). distance() counts in these, so that a degree of slant and a pixel of width weigh what they
# weigh among people.
MNIST_MEANS = ((11.1, 3.09, 18.1), (11.6, 3.01, 12.2), (5.4, 2.97, 18.1), (2.0, 2.79, 17.3), (2.7, 2.74, 17.3),
               (10.9, 2.61, 17.8), (-0.6, 3.03, 17.0), (0.9, 2.81, 17.0), (7.6, 2.88, 16.9), (-1.2, 2.75, 16.1))
MNIST_SPREAD = (13.3, 0.77, 1.76)
# A hand further than REACH spreads from the typical (in slant, 40 degrees) is written at that edge:
# past it, the model's digits stop being read as the digit asked for (docs/write.md's wider hands).
REACH = 3
INKED = 0.5  # of full ink: the pixels that count for the bounding box


def ink(images: torch.Tensor) -> np.ndarray:
    """Images (N, 1, 28, 28) in [-1, 1] as ink amounts (N, 28, 28) in [0, 1]."""
    return ((images.detach().float().cpu()[:, 0].clamp(-1, 1) + 1) / 2).numpy().astype(np.float64)


def slant(u: np.ndarray) -> float:
    """Degrees from upright by second moments (positive: leaning right); 0 for an empty image."""
    ys, xs = np.indices(u.shape)
    mass = u.sum()
    if mass == 0:
        return 0.0
    dy, dx = ys - (ys * u).sum() / mass, xs - (xs * u).sum() / mass
    mu02, mu11 = (u * dy * dy).sum(), (u * dx * dy).sum()
    return math.degrees(math.atan(-mu11 / mu02)) if mu02 > 0 else 0.0  # y grows downwards: leaning right, mu11 < 0


def stroke_width(u: np.ndarray) -> float:
    """Pixels: the width of the rectangle with the ink's area and outline length (see the top)."""
    # The gradient at each corner between four pixels: the ink's change across it, each way.
    u = np.pad(u, 1)
    gx = (u[1:, 1:] - u[1:, :-1] + u[:-1, 1:] - u[:-1, :-1]) / 2
    gy = (u[1:, 1:] - u[:-1, 1:] + u[1:, :-1] - u[:-1, :-1]) / 2
    area, outline = u.sum(), np.hypot(gx, gy).sum()
    if area == 0:
        return 0.0
    half = outline / 2
    return (half - math.sqrt(max(half * half - 4 * area, 0.0))) / 2


def size(u: np.ndarray) -> float:
    """Pixels: the side of a square of the ink's bounding box's area."""
    rows, columns = np.nonzero(u >= INKED)
    if len(rows) == 0:
        return 0.0
    return math.sqrt((rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1))


def measures(images: torch.Tensor) -> np.ndarray:
    """Each image's (slant, stroke width, size): (N, 3)."""
    return np.array([[slant(u), stroke_width(u), size(u)] for u in ink(images)]).reshape(-1, len(MEASURES))


def hand(images: torch.Tensor, digits) -> np.ndarray:
    """Each image's hand (N, 3): its measures less the typical ones of its digit (digits: one each)."""
    return measures(images) - np.array(MNIST_MEANS)[np.asarray(digits)]


def within_reach(hand: np.ndarray) -> np.ndarray:
    """A hand (3,) brought within REACH spreads of the typical, measure by measure."""
    return np.clip(hand, -REACH * np.array(MNIST_SPREAD), REACH * np.array(MNIST_SPREAD))


def spread(hands: np.ndarray) -> np.ndarray:
    """Each measure's standard deviation over a group of digits (N, 3) -> (3,): low is one hand."""
    return hands.std(axis=0)


def distance(hands: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """How far each hand (N, 3) is from a reference hand (3,): the Euclidean distance with each
    measure counted in MNIST_SPREAD. 1 is as far as people typically differ in one measure."""
    return np.sqrt((((hands - reference) / np.array(MNIST_SPREAD)) ** 2).sum(axis=1))


def describe(hand: np.ndarray) -> str:
    """For people, a hand: 'leaning 12° right of the usual, strokes 0.4 px wider, 1.1 px smaller'."""
    lean, width, size = hand
    return ", ".join([
        f"leaning {abs(lean):.0f}° {'right' if lean > 0 else 'left'} of the usual" if round(lean) else "the usual slant",
        f"strokes {abs(width):.1f} px {'wider' if width > 0 else 'thinner'}" if round(width, 1) else "the usual strokes",
        f"{abs(size):.1f} px {'larger' if size > 0 else 'smaller'}" if round(size, 1) else "the usual size"])


def towards(images: torch.Tensor, digits, target: np.ndarray | None = None) -> torch.Tensor:
    """Images (N, 1, H, W) in [-1, 1] of digits (one each) moved to the hand `target` (3,; None: their
    own mean hand) in slant and stroke width (size is left: MNIST's digits are all scaled to one
    box): sheared by the difference of slants, and dilated or eroded by half the difference of
    widths (a 3x3 maximum or minimum adds or takes about a pixel a side)."""
    now, typical = measures(images), np.array(MNIST_MEANS)[np.asarray(digits)]
    wanted = typical + ((now - typical).mean(axis=0) if target is None else target)
    shift = np.tan(np.radians(wanted[:, 0])) - np.tan(np.radians(now[:, 0]))
    return thicken(shear(images, shift), np.clip((wanted[:, 1] - now[:, 1]) / 2, -1, 1))


def shear(images: torch.Tensor, amounts) -> torch.Tensor:
    """Each image sheared about its ink's centre row: x moves by amount x the rows above it, so that
    tan(slant) grows by amount (positive: leaning further right)."""
    n, _, height, width = images.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=images.dtype, device=images.device),
                            torch.arange(width, dtype=images.dtype, device=images.device), indexing="ij")
    u = (images + 1) / 2
    centre = (u[:, 0] * ys).sum((1, 2)) / u.sum((1, 2, 3)).clamp(min=1e-6)
    amounts = torch.as_tensor(amounts, dtype=images.dtype, device=images.device)[:, None, None]
    source_x = xs + amounts * (ys - centre[:, None, None])  # where each pixel's ink comes from
    grid = torch.stack([(source_x + 0.5) / width * 2 - 1, ((ys + 0.5) / height * 2 - 1).expand(n, -1, -1)], -1)
    return F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * 2 - 1


def thicken(images: torch.Tensor, amounts) -> torch.Tensor:
    """Each image's strokes thickened (amount up to 1: towards a 3x3 maximum) or thinned (down to
    -1: towards a 3x3 minimum)."""
    u = (images + 1) / 2
    amounts = torch.as_tensor(amounts, dtype=images.dtype, device=images.device)[:, None, None, None]
    grown, shrunk = F.max_pool2d(u, 3, 1, 1), -F.max_pool2d(-u, 3, 1, 1)
    return torch.where(amounts > 0, u + amounts * (grown - u), u + amounts * (u - shrunk)) * 2 - 1
