"""Draw and repair: pictures into the model's world (MNIST's sizing and centring, whatever the
picture), uploads read within limits, SDEdit and inpainting."""

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from diffusion import SettingError
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.data import load_mnist, to_model_range
from diffusion.edit import (MAX_FILE_BYTES, EmptyImageError, PictureError, draw_settings, draw_steps, open_picture, part_mask, pen_width,
                            repair_steps, to_model_input)

from . import edit_survey

PER_DIGIT = 20  # test digits of each class a drawing pen or a half: 200 (the survey's table, 500)


def strokes_box_and_centre(image: torch.Tensor) -> tuple[tuple[int, int], tuple[float, float]]:
    """(height, width) of the strokes' bounding box and their centre of mass (y, x), 0-based."""
    ink = ((image[0, 0] + 1) / 2).numpy()
    rows, columns = np.nonzero(ink > 0.1)
    ys, xs = np.indices(ink.shape)
    return (int(np.ptp(rows)) + 1, int(np.ptp(columns)) + 1), ((ys * ink).sum() / ink.sum(), (xs * ink).sum() / ink.sum())


def three_drawn_in_a_corner(mode: str = "RGB", width: int = 28) -> Image.Image:
    """A big 3 drawn with a pen `width` px wide (28: MNIST-like at this size) in the top-left corner
    of an 800x800 white canvas."""
    canvas = Image.new(mode, (800, 800), "white" if mode != "RGBA" else (0, 0, 0, 0))
    pen = ImageDraw.Draw(canvas)
    colour = "black" if mode != "RGBA" else (20, 20, 200, 255)
    pen.arc((40, 30, 340, 260), 200, 90, fill=colour, width=width)
    pen.arc((40, 230, 340, 480), 270, 160, fill=colour, width=width)
    return canvas


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_a_digit_drawn_large_in_a_corner_comes_out_sized_and_centred_like_mnist(mode):
    image, _ = to_model_input(three_drawn_in_a_corner(mode))
    assert image.shape == (1, 1, 28, 28) and image.min() >= -1 and image.max() == 1
    (height, width), (centre_y, centre_x) = strokes_box_and_centre(image)
    assert max(height, width) <= 20 and max(height, width) >= 19, (height, width)
    assert abs(centre_y - 13.5) <= 1 and abs(centre_x - 13.5) <= 1, (centre_y, centre_x)


@pytest.mark.slow  # needs MNIST, which the everyday command does not
def test_mnist_digits_come_back_close_to_themselves(mnist_root):
    """MNIST's own digits are already made this way: brought in again, they move by about what a
    one-pixel shift moves them (measured on the first 200 test digits: median mean absolute
    difference 0.129 against 0.130 for a shift, in the model's range [-1, 1])."""
    images, _ = load_mnist(mnist_root, train=False)
    round_trips, shifts = [], []
    for digit in images[:50]:
        original = to_model_range(digit[None])
        again, _ = to_model_input(Image.fromarray(digit.numpy()))
        (height, width), (centre_y, centre_x) = strokes_box_and_centre(again)
        assert max(height, width) <= 20 and abs(centre_y - 13.5) <= 1 and abs(centre_x - 13.5) <= 1
        round_trips.append((again - original).abs().mean().item())
        shifts.append((torch.roll(original, 1, dims=3) - original).abs().mean().item())
    assert np.median(round_trips) <= 1.25 * np.median(shifts)


@pytest.mark.parametrize("picture", [Image.new("RGB", (300, 300), "white"), Image.new("L", (50, 80), 0),
                                     Image.new("RGBA", (200, 200), (0, 0, 0, 0)), Image.new("L", (10, 10), 128)])
def test_a_picture_without_strokes_says_so(picture):
    with pytest.raises(EmptyImageError, match="empty or one flat colour"):
        to_model_input(picture)


def versions(digit: np.ndarray) -> dict[str, Image.Image]:
    """One 28x28 MNIST digit (uint8) as it could be uploaded: as it is, enlarged ten times with whole
    pixels (as the app's own PNGs are), in ink on paper, as a JPEG, and enlarged smoothly to 1000 px."""
    picture = Image.fromarray(digit)
    enlarged = picture.resize((280, 280), Image.Resampling.NEAREST)
    jpeg = io.BytesIO()
    enlarged.convert("RGB").save(jpeg, format="JPEG", quality=90)
    return {"28 px": picture, "280 px, whole pixels": enlarged, "280 px, ink on paper": Image.fromarray(255 - digit).resize(
            (280, 280), Image.Resampling.NEAREST), "280 px JPEG": Image.open(jpeg),
            "1000 px, smooth": picture.resize((1000, 1000), Image.Resampling.BICUBIC)}


@pytest.mark.slow  # needs MNIST
def test_the_same_digit_reaches_the_model_alike_at_any_resolution(mnist_root):
    """What reaches the model depends on the writer, not the file: 100 MNIST digits, each uploaded as
    versions() makes them. Enlarged by whole pixels, or turned to ink on paper, a digit is the same
    model input as at 28 px; as a JPEG, its stroke width is within 10% for 99 in 100; enlarged
    smoothly to 1000 px (which blurs what it enlarges), within 5% at the median, 10% for 85 in 100
    (docs/edits-and-morphs.md)."""
    images, _ = load_mnist(mnist_root, train=False)
    differences = {}
    for digit in images[:100]:
        inputs = {name: to_model_input(picture)[0] for name, picture in versions(digit.numpy()).items()}
        width = pen_width(((inputs["28 px"][0, 0] + 1) / 2).numpy())
        torch.testing.assert_close(inputs["280 px, whole pixels"], inputs["28 px"], rtol=0, atol=1e-6)
        torch.testing.assert_close(inputs["280 px, ink on paper"], inputs["28 px"], rtol=0, atol=1e-6)
        for name in ("280 px JPEG", "1000 px, smooth"):
            differences.setdefault(name, []).append(abs(pen_width(((inputs[name][0, 0] + 1) / 2).numpy()) / width - 1))
    jpeg, smooth = np.array(differences["280 px JPEG"]), np.array(differences["1000 px, smooth"])
    assert (jpeg <= 0.1).mean() >= 0.99, np.sort(jpeg)[-5:]
    assert np.median(smooth) <= 0.05 and (smooth <= 0.1).mean() >= 0.85, (np.median(smooth), (smooth <= 0.1).mean())


def test_a_thin_pen_is_thickened_towards_mnist_and_a_normal_one_left_alone():
    """The 3 is 450 px tall, so a 4 px pen is 0.2 px at 28x28 and a 40 px one 1.8 px (MNIST: 2.3)."""
    thin = to_model_input(three_drawn_in_a_corner(width=4))[0]
    normal = to_model_input(three_drawn_in_a_corner(width=40))[0]
    assert 2.0 <= pen_width(((thin[0, 0] + 1) / 2).numpy()) <= 3.2
    assert 1.6 <= pen_width(((normal[0, 0] + 1) / 2).numpy()) <= 2.0


def test_a_mask_follows_its_picture_into_the_model_input():
    """The bottom half of the canvas, below the 3's middle, is the bottom half of the model's 3."""
    canvas = three_drawn_in_a_corner()
    mask = Image.new("L", canvas.size)
    ImageDraw.Draw(mask).rectangle((0, 255, 800, 800), fill=255)
    image, painted = to_model_input(canvas, mask)
    rows = painted[0, 0].any(dim=1).nonzero()[:, 0]
    assert painted.dtype == torch.bool and rows.max() == 27 and 12 <= rows.min() <= 15, rows.tolist()
    lower = slice(int(rows.min()), None)
    assert painted[0, 0, lower][image[0, 0, lower] > -1].all(), "all the 3's strokes below its middle"
    with pytest.raises(PictureError, match="the mask must have the picture's shape, 800 x 800, not 800 x 400"):
        to_model_input(canvas, Image.new("L", (800, 400)))


def half_a_jpeg() -> bytes:
    """The first half of a JPEG's bytes: its header reads, its picture does not."""
    buffer = io.BytesIO()
    Image.effect_noise((300, 300), 50).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()[:len(buffer.getvalue()) // 2]


NOT_A_PICTURE = "the file is not a picture this app can read: upload a PNG or JPEG"
DAMAGED = "the file is damaged or not a picture this app can read: upload a PNG or JPEG"


@pytest.mark.parametrize("content, message", [
    (b"hello, not a picture", NOT_A_PICTURE),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, NOT_A_PICTURE),  # a PNG's signature, then no header
    (half_a_jpeg(), DAMAGED),  # a header that reads, then the picture cut short
], ids=["text", "png-signature-only", "jpeg-cut-short"])
def test_a_file_that_is_no_picture_says_so(tmp_path, content, message):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(PictureError, match=f"^{re.escape(message)}$"):
        open_picture(path)


@pytest.mark.parametrize("side, message", [(10_000, "the picture is 10,000 x 10,000 pixels; pictures may have up to 25 million"),
                                           (20_000, "the picture is too large: pictures may have up to 25 million")])
def test_a_huge_picture_is_refused_before_it_is_decoded(tmp_path, monkeypatch, side, message):
    path = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(path)  # a few KB on disk, 100 or 400 million pixels
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self))
    with pytest.raises(PictureError, match=message):
        open_picture(path)
    assert not decoded, "refused from its header, before decoding"


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PictureError, match="the file is 20 MB; pictures may be up to 20 MB"):
        open_picture(big)


def test_an_upload_of_any_size_and_mode_is_read_and_reduced(tmp_path):
    """Reduced to at most WORK_SIDE px a side, keeping its proportions; smaller pictures as they are."""
    for mode, size, fmt, reduced in (("RGBA", (3000, 2000), "PNG", (1024, 683)),
                                     ("RGB", (4000, 3000), "JPEG", (1024, 768)),
                                     ("RGB", (640, 480), "JPEG", (640, 480)), ("L", (28, 28), "PNG", (28, 28))):
        path = tmp_path / f"picture.{fmt.lower()}"
        Image.new(mode, size, "white").save(path, format=fmt)
        picture = open_picture(path)
        assert picture.size == reduced and picture.mode == mode, (size, picture.size, picture.mode)


def test_draw_tidies_at_low_strength_and_follows_the_class_at_high(each_shipped_pipeline):
    pipe = each_shipped_pipeline
    classifier = load_classifier()
    drawn, _ = to_model_input(three_drawn_in_a_corner())
    steps = list(draw_steps(pipe, drawn, draw_settings(pipe, [3]), strength=0.5))
    half = round(0.5 * pipe.sampling_config.steps)
    assert [step.timestep for step in steps] == pipe.schedule.timesteps(half, start=500), \
        "half of the default steps, evenly from t = 500"
    tidied = steps[-1].x
    assert (tidied - drawn).abs().mean() < 0.1 and class_probabilities(classifier, tidied).argmax() == 3
    eight = list(draw_steps(pipe, drawn, draw_settings(pipe, [8]), strength=0.8))[-1].x
    assert class_probabilities(classifier, eight).argmax() == 8, "at high strength the class asked for wins"
    again = list(draw_steps(pipe, drawn, draw_settings(pipe, [8]), strength=0.8))[-1].x
    assert torch.equal(eight, again), "the same seed, the same edit"


@pytest.mark.parametrize("strength", [0, -0.5, 1.5, float("nan"), "strong"])
def test_a_strength_out_of_range_says_what_is_allowed(tiny_pipeline, strength):
    with pytest.raises(SettingError, match="strength must be a number above 0 and at most 1"):
        draw_steps(tiny_pipeline, torch.zeros(1, 1, 28, 28), draw_settings(tiny_pipeline, [3]), strength)


@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "ddpm"])
def test_repair_keeps_the_kept_pixels_with_every_sampler(tiny_pipeline, sampler):
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    masks = edit_survey.half_masks(2, "bottom")
    steps = list(repair_steps(tiny_pipeline, images, masks, tiny_pipeline.settings([3, 5], seed=1, sampler=sampler, steps=5)))
    assert len(steps) == 5
    kept_change = ((steps[-1].x - images).abs() * 127.5)[~masks]
    assert kept_change.max() <= 1, "kept pixels within one grey level"
    assert ((steps[-1].x - images).abs() * 127.5)[masks].mean() > 10, "the masked part is made anew"


@pytest.mark.parametrize("covered, message", [(0.0, "mask must be painted over the part to fill in"),
                                              (1.0, "mask must be part of the picture, leaving some of it to keep")])
def test_a_mask_of_nothing_or_everything_says_so(tiny_pipeline, covered, message):
    masks = torch.full((1, 1, 28, 28), bool(covered))
    with pytest.raises(SettingError, match=message):
        repair_steps(tiny_pipeline, torch.zeros(1, 1, 28, 28), masks, tiny_pipeline.settings([3]))


@pytest.mark.slow  # needs MNIST
@pytest.mark.parametrize("degradation", list(edit_survey.DEGRADATIONS))
def test_drawings_are_finished_as_the_digit_asked_for(shipped_pipeline, mnist_root, degradation):
    """Stand-ins for drawings (tests/edit_survey.py): the first test digits of each class, at the
    default strength towards their true class: at least 95% read as it."""
    images, labels = edit_survey.first_of_each_digit(mnist_root, PER_DIGIT)
    share, worst, worst_share = edit_survey.read_as(
        load_classifier(), edit_survey.draw_results(shipped_pipeline, images, labels, degradation), labels)
    assert share >= 0.95, f"{degradation}: {share:.1%} read as asked (worst digit {worst}: {worst_share:.0%})"


@pytest.mark.slow  # needs MNIST
@pytest.mark.parametrize("half", ["bottom", "left"])
def test_repairs_read_as_the_digit_asked_for_and_keep_their_pixels(shipped_pipeline, mnist_root, half):
    images, labels = edit_survey.first_of_each_digit(mnist_root, PER_DIGIT)
    repaired, masks = edit_survey.repair_results(shipped_pipeline, images, labels, half)
    share, worst, worst_share = edit_survey.read_as(load_classifier(), repaired, labels)
    assert share >= 0.97, f"{half} half: {share:.1%} read as asked (worst digit {worst}: {worst_share:.0%})"
    assert edit_survey.kept_change(repaired, images, masks) <= 1


def test_a_part_mask_covers_its_half_of_the_picture_and_nothing_else():
    for part, (rows, columns) in {"top half": (slice(0, 30), slice(None)), "bottom half": (slice(30, 60), slice(None)),
                                  "left half": (slice(None), slice(0, 20)), "right half": (slice(None), slice(20, 40))}.items():
        mask = np.asarray(part_mask(part, (40, 60))) > 0
        expected = np.zeros((60, 40), bool)
        expected[rows, columns] = True
        np.testing.assert_array_equal(mask, expected, err_msg=part)
    with pytest.raises(PictureError, match="must be one of top half, bottom half, left half, right half"):
        part_mask("middle", (40, 60))
