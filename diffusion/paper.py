"""Ink on paper: how much ink each pixel of a picture of a digit holds, whatever the picture is.

A canvas's strokes are its opaque pixels. On an opaque picture (a drawing, a scan, a phone's photo of
a page) ink is what is darker than the paper around it, relative to that paper's own shade, so
that uneven light, a shadow, grey or tinted paper and a camera's noise do not count as ink; and
then only what is nearly as dark as the strokes themselves, nor the thin straight lines printed on a
ruled or squared page, nor specks apart from the digit. Light strokes on a dark ground (MNIST's
own digits, chalk on a board) are turned round first. docs/edits-and-morphs.md measures it.
"""

import numpy as np
from PIL import Image
from scipy import ndimage

# The paper's shade is found over windows PAPER_WINDOW of the picture's longer side wide (wider than
# any stroke), then over windows STROKES_IN_WINDOW times the strokes' thickness, narrowed at most
# NARROWINGS times.
PAPER_WINDOW, STROKES_IN_WINDOW, NARROWINGS = 0.25, 3, 4
# In a photo, ink counts from FAINT of the strokes' typical darkness and fully from SOLID: a page's
# printed lines are fainter than a pen.
FAINT, SOLID = 0.5, 0.7
# A photo (any noise: a drawing's paper is flat) is blurred by SMOOTHING of its longer side first. A
# drawing keeps its ink's shades as drawn.
SMOOTHING = 1 / 400
# Printed lines: thin pieces that run off the picture's edge, or are straight and LINE of its side long;
# and whole pieces that run off the edge and are RULING times longer than thick (a blank page's).
LINE, RULING = 0.15, 40
# Specks: pieces with less than SPECK of the largest piece's ink, further than NEAR of the digit's size from it.
SPECK, NEAR = 0.1, 0.25


def ink(image: Image.Image) -> np.ndarray:
    """How much ink each pixel of the picture holds, 0 to 1 (H, W), as the module's docstring says."""
    rgba = np.asarray(image.convert("RGBA"), np.float32) / 255
    alpha = rgba[..., 3]
    if alpha.min() < 0.5:
        return alpha
    grey = np.asarray(image.convert("L"), np.float32) / 255
    photo = noise(grey) > 0
    if photo:  # its noise evened out, while a drawing's hair-thin strokes stay as dark as drawn
        grey = ndimage.gaussian_filter(grey, SMOOTHING * max(grey.shape))
    if strokes_are_light(grey):
        grey = 1 - grey
    # The paper under strokes of unknown width is first found over wide windows; then over windows
    # just wider than the strokes found, which follow light and shadow more closely and so find
    # thinner strokes, until the windows stop narrowing.
    window = PAPER_WINDOW * max(grey.shape)
    for _ in range(NARROWINGS):
        strokes = strong_ink(grey, window, photo)
        narrower = STROKES_IN_WINDOW * max(thickness(strokes), 1)
        if narrower > 0.9 * window:
            break
        window = narrower
    return without_specks(without_thin_lines(without_rulings(strokes)))


def noise(grey: np.ndarray) -> float:
    """The picture's noise: the median difference, in shades 0 to 1, between a pixel and the mean of
    its neighbours. A drawing or a scan has none; a photo's sensor and JPEG give it some."""
    return float(np.median(np.abs(grey - ndimage.uniform_filter(grey, 3, mode="nearest"))))


def strong_ink(grey: np.ndarray, window: float, photo: bool) -> np.ndarray:
    """Dark strokes' ink (H, W): darkness relative to the paper's shade found over windows `window`
    px wide. In a photo, from FAINT of the strokes' typical darkness (none) to SOLID (all of it),
    to leave out printed lines and noise; a drawing's soft grey edges are kept as they are."""
    darkness = (1 - grey / np.maximum(paper_shade(grey, window), 1e-3)).clip(0, 1)
    if not photo:
        return darkness
    strongest = np.percentile(darkness, 99.9)
    typical = max(float(np.median(darkness[darkness >= FAINT * strongest])), 1e-3)  # the strokes' own darkness
    return ((darkness / typical - FAINT) / (SOLID - FAINT)).clip(0, 1) * typical


def strokes_are_light(grey: np.ndarray) -> bool:
    """Whether the strokes are lighter than the ground (as in MNIST), not darker (as on paper). The
    ground is what most of the border shows, and it lies at one end of the picture's shades, the
    strokes at the other: by ratios of shades, as light multiplies them, the ground is nearer the
    darkest end (light strokes) or the lightest (dark strokes)."""
    ground = np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    darkest, lightest = np.maximum(np.percentile(grey, [1, 99]), 1e-3)
    return np.log(max(ground, 1e-3) / darkest) < np.log(lightest / max(ground, 1e-3))


def paper_shade(grey: np.ndarray, window: float) -> np.ndarray:
    """The paper's shade under each pixel (H, W), dark strokes taken away: a closing (a maximum, then
    a minimum, over squares `window` px wide, wider than the strokes), which keeps the light's
    gradients and a shadow's edge as they are."""
    return ndimage.grey_closing(grey, size=max(round(window), 1), mode="reflect")


def thickness(amount: np.ndarray) -> float:
    """How wide the strokes are where they are widest, in pixels: twice the 90th percentile of the
    inked pixels' distance to the paper. Thin printed lines, however long, do not lower it."""
    inked = amount > 0.5 * amount.max()
    return 2 * float(np.percentile(ndimage.distance_transform_edt(inked)[inked], 90)) if inked.any() else 0.0


def without_rulings(amount: np.ndarray) -> np.ndarray:
    """Ink without the pieces, connected where inked, that run off the edge of the picture and are
    RULING times longer than they are thick: a page's printed lines or grid, which a blank page holds
    and nothing else (a stroke drawn across a canvas is thicker)."""
    pieces, count = ndimage.label(amount > 0)
    rulings = [index for index, box in enumerate(ndimage.find_objects(pieces), start=1)
               if (box[0].start == 0 or box[1].start == 0 or box[0].stop == amount.shape[0] or box[1].stop == amount.shape[1])
               and max(box[0].stop - box[0].start, box[1].stop - box[1].start) > RULING * thickness(amount[box] * (pieces[box] == index))]
    return np.where(np.isin(pieces, rulings), 0, amount)


def without_thin_lines(amount: np.ndarray) -> np.ndarray:
    """Ink without a page's printed lines: the pieces of what is much thinner than the strokes (gone
    in an opening, a minimum then a maximum over squares half the strokes' thickness) that run off
    the edge of the picture, or are straight and at least LINE of its side long, as lines are. A
    digit's own thin curves and short strokes stay."""
    width = thickness(amount)
    opened = ndimage.grey_opening(amount, size=max(int(width / 2), 1), mode="nearest")
    pieces, count = ndimage.label((amount > 0) & (opened < amount / 2))
    if count == 0:
        return amount
    off_the_edge = np.isin(np.arange(count + 1), np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
    lines = off_the_edge | straight(pieces, count, width, LINE * max(amount.shape))
    lines[0] = False
    return np.where(lines[pieces], opened, amount)


def straight(pieces: np.ndarray, count: int, width: float, length: float) -> np.ndarray:
    """For each labelled piece (and the unlabelled 0): whether it is a straight line segment at least
    `length` long, lying within a band a quarter of `width` wide (spreads along and across it from
    the second moments of its pixels' positions)."""
    ys, xs = np.indices(pieces.shape, dtype=np.float64)
    index = np.arange(count + 1)
    mean = [ndimage.mean(values, pieces, index) for values in (ys, xs, ys * ys, xs * xs, ys * xs)]
    yy, xx, xy = mean[2] - mean[0] ** 2, mean[3] - mean[1] ** 2, mean[4] - mean[0] * mean[1]
    half_gap = np.sqrt(((yy - xx) / 2) ** 2 + xy ** 2)
    along, across = (yy + xx) / 2 + half_gap, np.maximum((yy + xx) / 2 - half_gap, 0)
    return (np.sqrt(12 * along) >= length) & (np.sqrt(12 * across) < width / 4)


def without_specks(amount: np.ndarray) -> np.ndarray:
    """Ink without specks apart from the digit (noise, a shadow's corner): pieces, connected where
    inked, that hold less than SPECK of the largest piece's ink and lie outside the box of the
    larger pieces, widened by NEAR of its size. Small pieces near it are the digit's own (a broken
    stroke, a dot)."""
    pieces, count = ndimage.label(amount > 0)
    if count < 2:
        return amount
    held = ndimage.sum_labels(amount, pieces, index=np.arange(1, count + 1))
    boxes = ndimage.find_objects(pieces)
    large = [box for box, amount_held in zip(boxes, held) if amount_held >= SPECK * held.max()]
    top, left = min(box[0].start for box in large), min(box[1].start for box in large)
    bottom, right = max(box[0].stop for box in large), max(box[1].stop for box in large)
    margin = NEAR * max(bottom - top, right - left)
    top, left, bottom, right = top - margin, left - margin, bottom + margin, right + margin
    inside = [box[0].start < bottom and box[0].stop > top and box[1].start < right and box[1].stop > left for box in boxes]
    kept = np.concatenate([[False], (held >= SPECK * held.max()) | np.array(inside)])
    return np.where(kept[pieces], amount, 0)
