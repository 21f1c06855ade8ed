"""Ink on paper: how much ink each pixel of a picture of a digit holds, whatever the picture is.

A canvas's strokes are its opaque pixels. On an opaque picture (a drawing, a scan, a phone's photo of
a page) ink is what is darker than the paper around it, relative to that paper's own shade, so
that uneven light, a shadow, grey or tinted paper and a camera's noise do not count as ink; nor
the lines ruled across an exercise book's page, however dark; and then only what is nearly as dark
as the strokes themselves, nor the thin straight lines printed on a ruled or squared page, nor
specks apart from the digit. Light strokes on a dark ground (MNIST's own digits, chalk on a board)
are turned round first. docs/edits-and-morphs.md measures it.
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
# A photo (any noise, or no shade covering FLAT of it: a drawing's paper is flat) is blurred by
# SMOOTHING of its longer side first. A drawing keeps its ink's shades as drawn.
FLAT, SMOOTHING = 0.5, 1 / 400
# The light falling on a photo is its mean over LIGHT_BLOCKS blocks a side.
LIGHT_BLOCKS = 4
# A page's ruled lines: at least RULINGS parallel straight lines within TILT degrees of level or
# upright (a page seen askew), thinner than THIN of the picture's longer side, with RULED of the
# strongest darkness or more along SPAN of their length across the picture.
RULINGS, TILT, THIN, RULED, SPAN = 2, 10, 0.01, 0.2, 0.9
ANGLE_STEP = 0.25  # degrees between the angles tried; lines within a degree are parallel
# What is left of them: pieces of ink with ALONG of their pixels near them.
ALONG = 0.9
# Printed lines: thin pieces that run off the picture's edge, or are straight and LINE of its side long;
# and whole pieces that run off the edge and are RULING times longer than thick (a blank page's).
LINE, RULING = 0.15, 40
# Specks: pieces with less than SPECK of the largest piece's ink, further than NEAR of the digit's size from it.
SPECK, NEAR = 0.1, 0.25


def ink(image: Image.Image) -> np.ndarray:
    """How much ink each pixel of the picture holds, 0 to 1 (H, W), as the module's docstring says."""
    alpha = np.asarray(image.convert("RGBA").getchannel("A"), np.float32) / 255
    if alpha.min() < 0.5:
        return alpha
    grey = np.asarray(image.convert("L"), np.float32) / 255
    photo = is_photo(grey)
    if photo:  # its noise evened out, while a drawing's hair-thin strokes stay as dark as drawn
        grey = ndimage.gaussian_filter(grey, SMOOTHING * max(grey.shape))
    # A photo's strokes are light only where they are so in an even light too: a page lit brightly
    # at one side is not a light stroke.
    if strokes_are_light(grey) and (not photo or strokes_are_light(evenly_lit(grey))):
        grey = 1 - grey
    # The paper under strokes of unknown width is first found over wide windows; then over windows
    # just wider than the strokes found, which follow light and shadow more closely and so find
    # thinner strokes, until the windows stop narrowing. A ruled page's lines are found once, and
    # take no part in the strokes.
    window = PAPER_WINDOW * max(grey.shape)
    dark = darkness(grey, window)
    ruled, near_lines = on_ruled_lines(dark) if photo else (np.zeros(dark.shape, bool),) * 2
    for _ in range(NARROWINGS):
        dark[ruled] = 0
        strokes = strong_ink(dark, photo)
        narrower = STROKES_IN_WINDOW * max(thickness(strokes), 1)
        if narrower > 0.9 * window:
            break
        window = narrower
        dark = darkness(grey, window)
    return without_specks(without_thin_lines(without_rulings(without_pieces_along(strokes, near_lines))))


def is_photo(grey: np.ndarray) -> bool:
    """Whether the picture is a photo, not a drawing or a scan: it has noise (the median difference
    between a pixel and the mean of its neighbours, which a camera's sensor and JPEG give it), or no
    one shade covers FLAT of it, as a drawing's flat paper does (a phone that smooths its noise away
    still sees the light change across the page)."""
    noise = np.median(np.abs(grey - ndimage.uniform_filter(grey, 3, mode="nearest")))
    commonest = np.bincount(np.round(grey * 255).astype(np.uint8).ravel(), minlength=256).max()
    return bool(noise > 0 or commonest < FLAT * grey.size)


def darkness(grey: np.ndarray, window: float) -> np.ndarray:
    """How much darker each pixel is than the paper's shade found over windows `window` px wide,
    relative to that shade, 0 to 1 (H, W)."""
    return (1 - grey / np.maximum(paper_shade(grey, window), 1e-3)).clip(0, 1)


def strong_ink(dark: np.ndarray, photo: bool) -> np.ndarray:
    """Dark strokes' ink (H, W) from their darkness: in a photo, from FAINT of the strokes' typical
    darkness (none) to SOLID (all of it), to leave out printed lines and noise; a drawing's soft
    grey edges are kept as they are."""
    if not photo:
        return dark
    strongest = np.percentile(dark, 99.9)
    typical = max(float(np.median(dark[dark >= FAINT * strongest])), 1e-3)  # the strokes' own darkness
    return ((dark / typical - FAINT) / (SOLID - FAINT)).clip(0, 1) * typical


def strokes_are_light(grey: np.ndarray) -> bool:
    """Whether the strokes are lighter than the ground (as in MNIST), not darker (as on paper). The
    ground is what most of the border shows, and it lies at one end of the picture's shades, the
    strokes at the other: by ratios of shades, as light multiplies them, the ground is nearer the
    darkest end (light strokes) or the lightest (dark strokes)."""
    ground = np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    darkest, lightest = np.maximum(np.percentile(grey, [1, 99]), 1e-3)
    return np.log(max(ground, 1e-3) / darkest) < np.log(lightest / max(ground, 1e-3))


def evenly_lit(grey: np.ndarray) -> np.ndarray:
    """A photo's shades (H, W) relative to the light falling on each part of it, its mean over
    LIGHT_BLOCKS blocks a side, smoothly joined: a page lit brightly at one side looks evenly lit."""
    light = Image.fromarray(grey).resize((LIGHT_BLOCKS, LIGHT_BLOCKS), Image.Resampling.BOX)
    return grey / np.maximum(np.asarray(light.resize(grey.shape[::-1], Image.Resampling.BILINEAR)), 1e-3)


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


def on_ruled_lines(dark: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a ruled page's lines alone are, and where it is near them (two masks, H x W), from a
    photo's darkness: RULINGS or more parallel lines (on_level_lines), level or upright, inked with
    RULED of the strongest darkness, where the ink across the line is no thicker than a line. A
    stroke that crosses a line is thick across it there, so it keeps its ink; a digit's straight
    strokes are never two parallel lines across the picture. The lines are looked for at half the
    resolution (a pixel there inked where any of its four is): a quarter of the work."""
    inked = dark > RULED * np.percentile(dark, 99.9)
    height, width = inked.shape[0] // 2 * 2, inked.shape[1] // 2 * 2
    half = inked[:height, :width].reshape(height // 2, 2, width // 2, 2).any(axis=(1, 3))
    found = on_level_lines(half), on_level_lines(half.T).T
    if not (found[0].any() or found[1].any()):
        return np.zeros_like(inked), np.zeros_like(inked)
    thin = line_thickness(inked.shape)
    level, upright = np.ones((2 * thin + 1, 1), bool), np.ones((1, 2 * thin + 1), bool)
    on, near = [], []  # on each kind of line (its band, and a pixel more for its blurred edge), and near it
    for lines, across in zip(found, (level, upright)):
        on_lines = np.zeros_like(inked)
        on_lines[:height, :width] = lines.repeat(2, axis=0).repeat(2, axis=1)
        on.append(ndimage.binary_dilation(on_lines, np.ones(np.minimum(across.shape, 3), bool)))
        near.append(ndimage.binary_dilation(on_lines, across))
    # A stroke is ink thick across a line, apart from the other lines (a grid's crossings).
    lines_alone = [on[k] & ~ndimage.binary_opening(inked & ~on[1 - k], across) for k, across in enumerate((level, upright))]
    return lines_alone[0] | lines_alone[1], near[0] | near[1]


def line_thickness(shape: tuple[int, ...]) -> int:
    """The thickest a ruled line's ink is across it, in px, in a picture of this shape: THIN of its longer side."""
    return max(round(THIN * max(shape)), 2)


def on_level_lines(inked: np.ndarray) -> np.ndarray:
    """The inked pixels on RULINGS or more parallel lines within TILT degrees of level, each inked
    along SPAN of its length in the picture (at least half the picture's width: not a corner's short
    cut) and THIN: a Hough transform, y = offset + x tan(angle), angles ANGLE_STEP apart, in bands
    two pixels wide. Lines found at neighbouring angles are one line; parallel lines are
    those within a degree of one another."""
    height, width = inked.shape
    ys, xs = np.nonzero(inked)
    # A band two pixels wide from row y holds a column's ink if row y or y + 1 is inked there: the
    # pairs' rows, -1 to height - 1, are counted once for every angle.
    pairs = np.zeros((height + 1, width), bool)
    pairs[:-1] |= inked
    pairs[1:] |= inked
    pair_ys, pair_xs = np.nonzero(pairs)
    slopes = np.tan(np.radians(np.arange(-TILT, TILT + ANGLE_STEP / 2, ANGLE_STEP)))
    bands = [level_bands(pair_ys - 1, pair_xs, slope, inked.shape) for slope in slopes]
    lines = np.array([np.count_nonzero(band[1:] & ~band[:-1]) for band in bands])
    within = round(1 / ANGLE_STEP)  # steps in a degree
    found = np.zeros(len(ys), bool)
    for k, (band, slope) in enumerate(zip(bands, slopes)):
        if lines[max(k - within, 0):k + within + 1].max() >= RULINGS:
            # Each pixel's band is found again, not kept from level_bands: kept for every angle,
            # they would be the largest arrays here.
            found |= (band | np.roll(band, 1))[band_offsets(ys, xs, slope, width)]
    mask = np.zeros_like(inked)
    mask[ys[found], xs[found]] = True
    return mask


def band_offsets(ys: np.ndarray, xs: np.ndarray, slope: float, width: int) -> np.ndarray:
    """Which band, y = offset + x slope at whole-pixel offsets counted from the lowest, each pixel (ys, xs) is in."""
    return np.floor(ys - xs * slope - min(0.0, -slope * (width - 1))).astype(np.int64)


def level_bands(pair_ys: np.ndarray, pair_xs: np.ndarray, slope: float, shape: tuple[int, int]) -> np.ndarray:
    """For each band of band_offsets and the next (two pixels wide): whether it is a line, inked
    along SPAN of its length, at least half the width, and THIN (the bands beside it are not). The
    ink is given as the pairs of rows inked in each column: each pair's upper row (pair_ys, from
    -1) and its column (pair_xs)."""
    height, width = shape
    thin = line_thickness(shape)
    lowest = min(0.0, -slope * (width - 1))
    count = int(height - lowest + abs(slope) * width) + 2
    # Columns inked in each band; the band above the first (the pair of rows -1 and 0) is counted
    # as the last, which is empty, as the bands beside a band are found round the end (np.roll).
    covered = np.bincount(band_offsets(pair_ys, pair_xs, slope, width) % count, minlength=count)
    starts = np.arange(count) + lowest  # each offset's line: x where 0 <= start + x slope <= height - 1
    if slope:
        ends = ((0 - starts) / slope, (height - 1 - starts) / slope)
        length = np.maximum(np.minimum(np.maximum(*ends), width - 1) - np.maximum(np.minimum(*ends), 0) + 1, 0)
    else:
        length = np.where((starts >= 0) & (starts <= height - 1), width, 0)
    clear = (np.roll(covered, thin) < SPAN * length / 2) & (np.roll(covered, -thin) < SPAN * length / 2)
    return (covered >= SPAN * length) & (length >= width / 2) & clear


def without_pieces_along(amount: np.ndarray, near_lines: np.ndarray) -> np.ndarray:
    """Ink without the pieces, connected where inked, that lie ALONG or more near a ruled page's
    lines: what is left of a line where it was fainter or bent, not a digit's stroke, which leaves them."""
    if not near_lines.any():
        return amount
    pieces, count = ndimage.label(amount > 0)
    along = ndimage.mean(near_lines, pieces, np.arange(1, count + 1)) >= ALONG
    return np.where(np.concatenate([[False], along])[pieces], 0, amount)


def without_rulings(amount: np.ndarray) -> np.ndarray:
    """Ink without the pieces, connected where inked, that run off the edge of the picture and are
    RULING times longer than they are thick: a page's printed lines or grid, which a blank page holds
    and nothing else (a stroke drawn across a canvas is thicker)."""
    pieces, count = ndimage.label(amount > 0)
    boxes = ndimage.find_objects(pieces)
    lengths = [max(box[0].stop - box[0].start, box[1].stop - box[1].start) for box in boxes]
    rulings = [index for index, (box, length) in enumerate(zip(boxes, lengths), start=1)
               if (box[0].start == 0 or box[1].start == 0 or box[0].stop == amount.shape[0] or box[1].stop == amount.shape[1])
               and length > 2 * RULING  # a piece is at least 2 px thick: the short ones need no measuring
               and length > RULING * thickness(amount[box] * (pieces[box] == index))]
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
