"""Photos of handwriting: the figures on photos in docs/edits-and-morphs.md, measured on the shipped
weights with photo-like pictures made here from MNIST's test digits and printed digits.

    MNIST_ROOT=../shared/data python -m tests.photo_survey       # about 50 minutes on 2 CPU cores

Each picture is a page seen by a phone: paper (its colour times the light falling on it) with a
digit written on it in pen or pencil, then the camera's noise and a JPEG. Every picture has a
little of each (off-white paper, a faint light gradient, noise, JPEG quality 90); each class in
DEFECTS adds one defect in full, and "phone photo" adds several at once. A picture is read right
when the classifier reads its model input (edit.to_model_input) as the digit written, and
finished right when Draw, at its defaults towards the digit it was read as, makes that digit.
tests/test_photos.py asserts at least 95% of both for each class on a smaller set.
"""

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from diffusion import Pipeline
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.data import default_data_dir
from diffusion.edit import EmptyImageError, NotADigitError, draw_settings, draw_steps, read_digit, to_model_input
from diffusion.samplers import final_image

from .edit_survey import BATCH, first_of_each_digit

WIDTH, HEIGHT = 640, 480  # px: a phone photo, as the app reduces it (to at most 1024 a side), and less
PER_DIGIT = 50  # MNIST test digits of each class, per defect, in the survey
PRINTED = 2  # printed digits of each class, per defect (sizes and places differ)
INKS = {"black pen": (0.12, 0.12, 0.15), "blue pen": (0.2, 0.25, 0.55), "pencil": (0.38, 0.38, 0.4)}


def uniform(generator: np.random.Generator, low: float, high: float) -> float:
    return float(generator.uniform(low, high))


class Page:
    """A picture being made: the paper's reflectance (H, W, 3), the light falling on it (H, W, 1),
    and where the digit lies (its height and centre, px)."""

    def __init__(self, generator: np.random.Generator):
        self.generator = generator
        shade = uniform(generator, 0.86, 0.96)
        self.paper = np.ones((HEIGHT, WIDTH, 3), np.float32) * shade * np.array([1, 0.99, uniform(generator, 0.93, 0.99)], np.float32)
        self.light = smooth_light(generator, 0.9, 1.0)
        self.digit_height = uniform(generator, 0.45, 0.75) * HEIGHT
        self.centre = (HEIGHT / 2 + uniform(generator, -0.12, 0.12) * HEIGHT, WIDTH / 2 + uniform(generator, -0.2, 0.2) * WIDTH)
        self.noise, self.quality, self.warp = 0.01, 90, None
        self.pen = None  # px: a pen's width, or None for the digit's own strokes (a felt pen) scaled
        self.ink_colour = np.array(list(INKS.values())[generator.integers(len(INKS))], np.float32)

    def write(self, strokes: np.ndarray) -> None:
        """Ink (H, W) in [0, 1] on the paper, over whatever is printed on it."""
        self.paper = self.paper * (1 - strokes[..., None]) + self.ink_colour * strokes[..., None]

    def photo(self) -> Image.Image:
        """What the phone saves: paper times light, with the sensor's noise, as a JPEG."""
        paper = self.paper if self.warp is None else seen_at_an_angle(self.paper, self.warp)
        seen = paper * self.light
        seen = seen + self.generator.normal(0, self.noise, seen.shape).astype(np.float32)
        rgb = Image.fromarray((seen.clip(0, 1) * 255).round().astype(np.uint8))
        saved = io.BytesIO()
        rgb.save(saved, "JPEG", quality=self.quality)
        return Image.open(saved)


def seen_at_an_angle(paper: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The page (H, W, 3) as the camera sees it when the photo's corners fall on `corners` of the
    page (top-left, top-right, bottom-right, bottom-left): a homography, solved from the four pairs."""
    photo = [(0, 0), (WIDTH, 0), (WIDTH, HEIGHT), (0, HEIGHT)]
    rows = [[x, y, 1, 0, 0, 0, -u * x, -u * y] for (x, y), (u, v) in zip(photo, corners)] + \
           [[0, 0, 0, x, y, 1, -v * x, -v * y] for (x, y), (u, v) in zip(photo, corners)]
    targets = [u for u, v in corners] + [v for u, v in corners]
    coefficients = np.linalg.solve(np.array(rows, np.float64), np.array(targets, np.float64))
    channels = [Image.fromarray(paper[..., c]).transform((WIDTH, HEIGHT), Image.Transform.PERSPECTIVE, tuple(coefficients),
                                                         Image.Resampling.BILINEAR, fillcolor=float(paper[0, 0, c]))
                for c in range(3)]
    return np.stack([np.asarray(channel) for channel in channels], axis=2)


def smooth_light(generator: np.random.Generator, darkest: float, brightest: float) -> np.ndarray:
    """Light falling on the page (H, W, 1): a gradient from darkest on one side to brightest on the
    other, in a random direction, with a lamp's soft fall-off around a random point."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle = uniform(generator, 0, 2 * math.pi)
    along = (xs - WIDTH / 2) * math.cos(angle) + (ys - HEIGHT / 2) * math.sin(angle)
    gradient = (along - along.min()) / (along.max() - along.min())
    lamp_y, lamp_x = uniform(generator, 0, HEIGHT), uniform(generator, 0, WIDTH)
    fall_off = np.exp(-((ys - lamp_y) ** 2 + (xs - lamp_x) ** 2) / (2 * (1.2 * WIDTH) ** 2))
    light = gradient * 0.6 + fall_off * 0.4
    light = (light - light.min()) / (light.max() - light.min())
    return (darkest + (brightest - darkest) * light)[..., None]


def written(page: Page, digit: torch.Tensor) -> np.ndarray:
    """An MNIST digit (28, 28, uint8) as pen strokes on the page: its 20 px box scaled to the page's
    digit height, at the page's centre, with smooth edges; with the page's pen, if it has one, down
    the middle of its strokes."""
    side = int(round(page.digit_height * 28 / 20))
    big = F.interpolate(digit[None, None].float() / 255, size=(side, side), mode="bicubic")[0, 0]
    stroke = torch.sigmoid((big - 0.45) * 12).numpy()  # a pen's solid line with a soft edge
    return placed(stroke if page.pen is None else thinned(stroke > 0.5, page.pen), page.centre)


def thinned(inked: np.ndarray, pen: float) -> np.ndarray:
    """Strokes (a mask) redrawn with a pen `pen` px wide down their middle: within pen / 2 of their
    ridge, where the distance to the paper peaks across the stroke (it falls by about 1 px a pixel
    across a stroke, and slowly along its middle)."""
    depth = ndimage.distance_transform_edt(inked)
    ridge = inked & (depth >= ndimage.grey_dilation(depth, size=3) - 0.6)
    near = ndimage.distance_transform_edt(~ridge) <= pen / 2
    return ndimage.gaussian_filter(near.astype(np.float32), 0.7).clip(0, 1)


def drawn(page: Page, drawing: Image.Image) -> np.ndarray:
    """A drawing as on Draw's canvas (black strokes on white, 0.8 of its height) as ink on the page,
    its strokes the page's digit height, at the page's centre."""
    side = int(page.digit_height / 0.8)
    return placed(1 - np.asarray(drawing.convert("L").resize((side, side)), np.float32) / 255, page.centre)


def printed(page: Page, digit: int) -> np.ndarray:
    """A printed digit (Pillow's own font, so no system font is needed) as ink on the page."""
    size = int(page.digit_height * 1.35)
    font = ImageFont.load_default(size)
    left, top, right, bottom = font.getbbox(str(digit))
    glyph = Image.new("L", (right - left + 8, bottom - top + 8))
    ImageDraw.Draw(glyph).text((4 - left, 4 - top), str(digit), fill=255, font=font)
    return placed(np.asarray(glyph, np.float32) / 255, page.centre)


def placed(stroke: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """A stroke picture (h, w) on an empty page (HEIGHT, WIDTH), its middle at centre, cut at the edges."""
    page = np.zeros((HEIGHT, WIDTH), np.float32)
    top, left = int(centre[0] - stroke.shape[0] / 2), int(centre[1] - stroke.shape[1] / 2)
    rows = slice(max(top, 0), min(top + stroke.shape[0], HEIGHT))
    columns = slice(max(left, 0), min(left + stroke.shape[1], WIDTH))
    page[rows, columns] = stroke[rows.start - top:rows.stop - top, columns.start - left:columns.stop - left]
    return page


def lines(count_along: float, width: float, offset: float, vertical: bool) -> np.ndarray:
    """Printed lines (HEIGHT, WIDTH) in [0, 1] every `count_along` px, `width` px wide, soft-edged."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    position = (xs if vertical else ys) + offset
    distance = np.abs((position + count_along / 2) % count_along - count_along / 2)
    return np.clip(width / 2 + 0.5 - distance, 0, 1)


def print_on(page: Page, pattern: np.ndarray, colour) -> None:
    """Printed lines (pattern, H x W in [0, 1]) in a colour: their ink takes away light, as a filter would."""
    page.paper = page.paper * (1 - pattern[..., None] * (1 - np.array(colour, np.float32)))


def uneven_light(page: Page) -> None:
    """A lamp to one side: the far side of the page gets a third to a half of the near side's light."""
    page.light = smooth_light(page.generator, uniform(page.generator, 0.33, 0.5), 1.0)


def tinted_paper(page: Page) -> None:
    """Grey recycled paper, or yellow, blue, pink or green paper, in a dim room."""
    tints = [(1, 1, 1), (1, 0.93, 0.62), (0.75, 0.85, 1), (1, 0.8, 0.85), (0.8, 0.95, 0.75)]
    tint = np.array(tints[page.generator.integers(len(tints))], np.float32)
    page.paper = np.ones_like(page.paper) * tint * uniform(page.generator, 0.55, 0.8)
    page.light = page.light * uniform(page.generator, 0.7, 0.95)


def noise_and_jpeg(page: Page) -> None:
    """A small sensor in poor light: strong noise, then a JPEG at low quality."""
    page.noise, page.quality = uniform(page.generator, 0.04, 0.08), int(page.generator.integers(25, 51))


def shadow(page: Page) -> None:
    """The phone's or the hand's shadow: a soft-edged dark region over part of the digit."""
    g = page.generator
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle = uniform(g, 0, 2 * math.pi)
    through = (page.centre[0] + uniform(g, -0.25, 0.25) * page.digit_height, page.centre[1] + uniform(g, -0.25, 0.25) * page.digit_height)
    inside = (xs - through[1]) * math.cos(angle) + (ys - through[0]) * math.sin(angle)
    shade = 1 / (1 + np.exp(-np.clip(inside / uniform(g, 3, 25), -50, 50)))
    page.light = page.light * (1 - uniform(g, 0.4, 0.6) * shade[..., None])


def ruled_paper(page: Page) -> None:
    """A ruled exercise book: light blue lines 0.4 to 1 digit height apart, sometimes a red margin."""
    g = page.generator
    spacing = uniform(g, 0.4, 1.0) * page.digit_height
    print_on(page, lines(spacing, uniform(g, 1, 3), uniform(g, 0, spacing), vertical=False),
             (uniform(g, 0.45, 0.6), uniform(g, 0.65, 0.75), uniform(g, 0.85, 0.95)))
    if g.random() < 0.5:
        print_on(page, lines(WIDTH * 2, 2, -uniform(g, 0.05, 0.2) * WIDTH, vertical=True), (0.9, 0.45, 0.45))


def squared_paper(page: Page) -> None:
    """Squared paper: grey or blue lines both ways, a fifth to a half of the digit's height apart."""
    g = page.generator
    spacing, width = uniform(g, 0.2, 0.5) * page.digit_height, uniform(g, 1, 2.5)
    colour = (0.62, 0.64, 0.66) if g.random() < 0.5 else (0.55, 0.68, 0.88)
    grid = np.maximum(lines(spacing, width, uniform(g, 0, spacing), False), lines(spacing, width, uniform(g, 0, spacing), True))
    print_on(page, grid, colour)


# An exercise book's paper (cream or grey, times a shade) and its rulings' colours, as a filter.
BOOK_PAPERS = {"cream": (1, 0.95, 0.8), "grey": (0.9, 0.9, 0.88)}
BOOK_LINES = {"blue": (0.4, 0.6, 0.95), "grey": (0.55, 0.56, 0.6), "green": (0.5, 0.8, 0.55),
              "violet": (0.6, 0.45, 0.85), "pink": (0.95, 0.55, 0.65)}


def exercise_book(page: Page) -> tuple[float, tuple[float, float, float]]:
    """A school exercise book's page: cream or grey paper in a room's light, a digit a quarter to
    three quarters of the photo's height written with a ballpoint (a tenth to a twenty-fifth of its
    height wide) or a felt pen, and the colour its lines are printed in (one of BOOK_LINES, a pale
    or a strong print of it); returns the digit's height, which the rulings are spaced by, and that
    colour."""
    g = page.generator
    page.digit_height = uniform(g, 0.25, 0.75) * HEIGHT
    if g.random() < 0.5:
        page.pen = uniform(g, 1 / 25, 1 / 10) * page.digit_height
    paper = np.array(list(BOOK_PAPERS.values())[g.integers(len(BOOK_PAPERS))], np.float32)
    page.paper = np.ones_like(page.paper) * paper * uniform(g, 0.7, 0.95)
    page.light = smooth_light(g, uniform(g, 0.6, 0.9), 1.0)
    strength = uniform(g, 0.6, 1.2)  # how much of the line colour's darkness is printed
    colour = 1 - strength * (1 - np.array(list(BOOK_LINES.values())[g.integers(len(BOOK_LINES))], np.float32))
    return page.digit_height, tuple(colour.clip(0.05, 1))


def lined_book(page: Page) -> None:
    """A lined exercise book: coloured lines 0.3 to 0.8 of the digit's height apart on cream or grey
    paper, and a red margin on half of them."""
    height, colour = exercise_book(page)
    g = page.generator
    spacing = uniform(g, 0.3, 0.8) * height
    print_on(page, lines(spacing, uniform(g, 1, 3), uniform(g, 0, spacing), vertical=False), colour)
    if g.random() < 0.5:
        print_on(page, lines(WIDTH * 2, 2, -uniform(g, 0.05, 0.2) * WIDTH, vertical=True), (0.9, 0.4, 0.4))


def squared_book(page: Page) -> None:
    """A squared exercise book: a coloured grid a fifth to a half of the digit's height wide on cream
    or grey paper, or, on half of them, Seyes ruling (French schools): bold lines both ways, and
    three fine lines between the bold horizontal ones."""
    height, colour = exercise_book(page)
    g = page.generator
    spacing, width = uniform(g, 0.2, 0.5) * height, uniform(g, 1, 2.5)
    if g.random() < 0.5:
        grid = np.maximum(lines(spacing, width, uniform(g, 0, spacing), False), lines(spacing, width, uniform(g, 0, spacing), True))
    else:
        spacing = uniform(g, 0.4, 0.8) * height
        offset = uniform(g, 0, spacing)
        fine = lines(spacing / 4, 1, offset, False) * 0.6
        grid = np.maximum.reduce([fine, lines(spacing, width, offset, False), lines(spacing, width, uniform(g, 0, spacing), True)])
    print_on(page, grid, colour)


def perspective(page: Page, tilt: float = 0.2) -> None:
    """The phone held at an angle: the page foreshortened (its near side up to `tilt` wider than its
    far side) and turned by up to 8 degrees."""
    g = page.generator
    page.digit_height = min(page.digit_height, 0.6 * HEIGHT)
    squeeze = uniform(g, tilt / 2, tilt) * WIDTH / 2
    corners = np.array([(squeeze, 0), (WIDTH - squeeze, 0), (WIDTH, HEIGHT), (0, HEIGHT)], np.float64)
    if g.random() < 0.5:  # the far side at the bottom instead
        corners = np.array([(0, 0), (WIDTH, 0), (WIDTH - squeeze, HEIGHT), (squeeze, HEIGHT)], np.float64)
    turn = math.radians(uniform(g, -8, 8))
    middle = np.array([WIDTH / 2, HEIGHT / 2])
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    page.warp = (corners - middle) @ rotation.T * 0.9 + middle  # where each corner of the photo falls on the page


def phone_photo(page: Page) -> None:
    """The most natural upload: grey paper under uneven light, a small sensor's noise and JPEG, held
    a little askew, on plain or ruled paper."""
    tinted_paper(page)
    page.light = smooth_light(page.generator, uniform(page.generator, 0.45, 0.65), 1.0) * uniform(page.generator, 0.75, 1)
    page.noise, page.quality = uniform(page.generator, 0.02, 0.05), int(page.generator.integers(40, 71))
    if page.generator.random() < 0.5:
        ruled_paper(page)
    perspective(page, tilt=0.1)


DEFECTS = {"uneven light": uneven_light, "grey or tinted paper": tinted_paper, "noise and JPEG": noise_and_jpeg,
           "shadow": shadow, "ruled paper": ruled_paper, "squared paper": squared_paper, "perspective": perspective,
           "phone photo": phone_photo, "lined exercise book": lined_book, "squared exercise book": squared_book}


def photo(defect: str, digit: torch.Tensor | int | Image.Image, generator: np.random.Generator) -> Image.Image:
    """A photo-like picture of an MNIST digit (28, 28 uint8), a printed digit (an int) or a drawing
    (as on Draw's canvas) with a defect."""
    page = Page(generator)
    DEFECTS[defect](page)
    page.write(printed(page, digit) if isinstance(digit, int) else
               drawn(page, digit) if isinstance(digit, Image.Image) else written(page, digit))
    return page.photo()


def blank_photo(defect: str, generator: np.random.Generator) -> Image.Image:
    """A photo with the defect and no digit: the paper alone."""
    page = Page(generator)
    DEFECTS[defect](page)
    return page.photo()


def photo_set(defect: str, mnist_root: str, per_digit: int = PER_DIGIT, printed_per_digit: int = PRINTED,
              seed: int = 0) -> tuple[list[Image.Image], torch.Tensor]:
    """Photos with the defect of the first per_digit MNIST test digits of each class and of
    printed_per_digit printed digits of each class; and the digits they show."""
    images, labels = first_of_each_digit(mnist_root, per_digit)
    generator = np.random.default_rng([seed, list(DEFECTS).index(defect)])
    printed_labels = torch.arange(10).repeat_interleave(printed_per_digit)
    pictures = [photo(defect, digit, generator) for digit in images] + [photo(defect, int(d), generator) for d in printed_labels]
    return pictures, torch.cat([labels, printed_labels])


def read_and_finished(pipe: Pipeline, classifier, pictures: list[Image.Image], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """For each picture: the digit it reads as (edit.read_digit; -1 where it is refused as without a
    digit), and the digit that Draw, at its defaults towards the digit read, made of it as the
    classifier reads it (-1 where refused)."""
    inputs, read = [], []
    for picture in pictures:
        try:
            model_input = to_model_input(picture)[0]
            read.append(read_digit(classifier, model_input))
            inputs.append(model_input)
        except (EmptyImageError, NotADigitError):
            read.append(-1)
    read = torch.tensor(read)
    inputs, digits = torch.cat(inputs), read[read >= 0]
    finished = torch.cat([final_image(draw_steps(pipe, inputs[i:i + BATCH], draw_settings(pipe, digits[i:i + BATCH].tolist(), seed)))
                          for i in range(0, len(inputs), BATCH)])
    made = torch.full_like(read, -1)
    made[read >= 0] = class_probabilities(classifier, finished).argmax(1)
    return read, made


def refused_blank_pages(classifier, defect: str, count: int = 20) -> int:
    """How many of `count` photos of a blank page with the defect are refused as without a digit."""
    generator, refused = np.random.default_rng([1, list(DEFECTS).index(defect)]), 0
    for _ in range(count):
        try:
            read_digit(classifier, to_model_input(blank_photo(defect, generator))[0])
        except (EmptyImageError, NotADigitError):
            refused += 1
    return refused


def main() -> None:
    pipe, classifier = Pipeline.load(), load_classifier()
    print(f"per defect: {PER_DIGIT} MNIST test digits and {PRINTED} printed digits of each class, seed 0, Draw's defaults;"
          " and 20 blank pages")
    for defect in DEFECTS:
        pictures, labels = photo_set(defect, default_data_dir())
        read, finished = read_and_finished(pipe, classifier, pictures)
        right = (read == labels) & (finished == labels)
        worst = min(range(10), key=lambda d: right[labels == d].float().mean())
        print(f"{defect}: read as written {(read == labels).float().mean():.1%}, finished as it "
              f"{right.float().mean():.1%} (worst digit {worst}: {right[labels == worst].float().mean():.0%}); "
              f"blank pages refused {refused_blank_pages(classifier, defect)} of 20", flush=True)


if __name__ == "__main__":
    main()
