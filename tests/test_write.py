"""Writing a number in one hand: the style measures on strokes of known slant and width, the
methods (the same seed, the same line; every digit the one asked for; one hand), and bad input."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion import SettingError, media, style
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.edit import draw_settings, to_model_input
from diffusion.samplers import final_image
from diffusion.write import GAP, MAX_DIGITS, hand_noise, invert, line, parse_number, write_like_steps, write_steps

from .conftest import run_here
from .write_survey import number_digits, pen_drawing


def bar(width: float, slant: float, length: float = 18, size: int = 28, supersample: int = 8) -> np.ndarray:
    """Ink (size, size) of a straight stroke through the centre, `width` px wide and `length` long,
    leaning `slant` degrees right of upright, drawn at 8x and averaged down (edges anti-aliased)."""
    n = size * supersample
    ys, xs = (np.indices((n, n)) + 0.5) / supersample - size / 2
    angle = math.radians(slant)
    along = xs * math.sin(angle) - ys * math.cos(angle)  # up and to the right
    across = xs * math.cos(angle) + ys * math.sin(angle)
    inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def as_image(ink: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(ink * 2 - 1).float()[None, None]


@pytest.mark.parametrize("slant", [-30, -10, 0, 15, 30, 45])
@pytest.mark.parametrize("width", [2.0, 2.5, 3.0, 4.0])
def test_slant_and_stroke_width_of_a_stroke_of_known_slant_and_width(slant, width):
    ink, length, angle = bar(width, slant), 18, math.radians(slant)
    # By second moments, a bar of width w and length L at angle a leans a little less than its axis:
    # tan = (L^2 - w^2) sin a cos a / (L^2 cos^2 a + w^2 sin^2 a), which is tan a for a line.
    expected = math.degrees(math.atan((length**2 - width**2) * math.sin(angle) * math.cos(angle)
                                      / (length**2 * math.cos(angle)**2 + width**2 * math.sin(angle)**2)))
    assert style.slant(ink) == pytest.approx(expected, abs=0.5)
    assert abs(expected - slant) < 3
    assert style.stroke_width(ink) == pytest.approx(width, abs=0.35)


def test_slant_leans_right_positive_and_the_measures_are_zero_without_ink():
    assert style.slant(bar(3, 20)) > 15 and style.slant(bar(3, -20)) < -15
    assert style.slant(bar(3, 20)[::-1]) < -15, "upside down, a right lean is a left lean"
    empty = np.zeros((28, 28))
    assert (style.slant(empty), style.stroke_width(empty), style.size(empty)) == (0.0, 0.0, 0.0)


def test_size_is_the_side_of_the_square_of_the_inks_box():
    ink = np.zeros((28, 28))
    ink[4:24, 10:15] = 1  # 20 rows, 5 columns
    assert style.size(ink) == pytest.approx(10.0)
    assert style.measures(as_image(ink))[0, 2] == pytest.approx(10.0)


def test_a_hand_is_the_measures_less_the_digits_typical_ones_and_distance_counts_in_peoples_spread():
    images = torch.cat([as_image(bar(3, 10)), as_image(bar(3, 10))])
    measures = style.measures(images)
    hands = style.hand(images, [1, 9])
    assert np.allclose(hands, measures - np.array([style.MNIST_MEANS[1], style.MNIST_MEANS[9]]))
    reference = np.zeros(3)
    one_spread = np.array([[style.MNIST_SPREAD[0], 0, 0], [0, 0, 0], [0, style.MNIST_SPREAD[1], style.MNIST_SPREAD[2]]])
    assert np.allclose(style.distance(one_spread, reference), [1, 0, math.sqrt(2)])
    assert np.allclose(style.spread(np.array([[1, 2, 3], [3, 2, 1]])), [1, 0, 1])


def test_towards_moves_a_stroke_to_the_hand_asked_for():
    image = as_image(bar(2.5, 0))
    start = style.measures(image)[0]
    target = np.array([20.0, 3.5, 0]) - np.array(style.MNIST_MEANS[1])  # a hand that writes this 1 at 20 degrees, 3.5 px
    moved = style.measures(style.towards(image, [1], target))[0]
    assert moved[0] == pytest.approx(20, abs=2.5) and start[0] == pytest.approx(0, abs=0.5)
    assert moved[1] == pytest.approx(3.5, abs=0.5)
    four = as_image(bar(4, 0))
    widths = [style.measures(style.thicken(four, [amount]))[0, 1] for amount in (-1, 0, 0.5, 1)]
    assert widths == sorted(widths) and widths[0] < 3 and widths[-1] > 5.5, "about a pixel a side, either way"


@pytest.mark.parametrize("text, digits, gaps", [
    ("2026", [2, 0, 2, 6], []),
    ("27 11 2026", [2, 7, 1, 1, 2, 0, 2, 6], [2, 4]),
    ("  1  2 ", [1, 2], [1]),
    ("0" * MAX_DIGITS, [0] * MAX_DIGITS, []),
])
def test_a_number_is_its_digits_and_where_its_spaces_fall(text, digits, gaps):
    assert parse_number(text) == (digits, gaps)


@pytest.mark.parametrize("text, message", [
    ("", "type a number to write: 1 to 12 digits"),
    ("   ", "type a number to write"),
    (None, "type a number to write"),
    ("12a4", "may hold only the digits 0 to 9 and spaces, not 'a'"),
    ("1.5-2", "not '-' '.'"),
    ("١٢٣", "may hold only the digits 0 to 9"),  # Arabic-Indic digits: digits to Python, not to the model
    ("1" * (MAX_DIGITS + 1), f"that is 13 digits; this writes up to {MAX_DIGITS}"),
])
def test_a_number_that_cannot_be_written_says_what_is_allowed(text, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(".", r"\.")) as raised:
        parse_number(text)
    assert raised.value.name == "number"


def test_a_line_has_its_typed_spaces():
    images = torch.full((3, 1, 28, 28), -1.0)
    assert line(images, []).shape == (32, 3 * 30 + 2)
    spaced = line(images, [1])
    assert spaced.shape == (32, 3 * 30 + 2 + GAP) and not spaced.any()


def test_a_number_is_written_the_same_from_the_same_seed_every_digit_as_asked(shipped_pipeline):
    pipe, classifier = shipped_pipeline, load_classifier()
    settings = pipe.settings([2, 0, 2, 6, 1, 9], seed=3)
    first, again = (final_image(write_steps(pipe, settings)) for _ in range(2))
    assert torch.equal(first, again)
    other = final_image(write_steps(pipe, pipe.settings([2, 0, 2, 6, 1, 9], seed=4)))
    assert (other - first).abs().mean() > 0.05, "another seed is another hand"
    assert class_probabilities(classifier, torch.cat([first, other])).argmax(1).tolist() == [2, 0, 2, 6, 1, 9] * 2
    assert len(write_steps(pipe, settings)) == settings.steps


def test_the_digits_of_a_number_share_a_hand_more_than_independent_samples(shipped_pipeline):
    pipe = shipped_pipeline
    numbers = [number_digits(seed) for seed in range(12)]
    one_hand = torch.cat([final_image(write_steps(pipe, pipe.settings(digits, seed))) for seed, digits in enumerate(numbers)])
    independent = pipe.generate(pipe.settings([digit for digits in numbers for digit in digits], seed=0))

    def spread(images):  # of slant and stroke width, within a number, averaged over the numbers
        return style.measures(images)[:, :2].reshape(len(numbers), 6, 2).std(axis=1).mean(axis=0)

    # On the survey's 100 numbers, 0.38 and 0.23 of the independent spread (docs/write.md).
    assert (spread(one_hand) < 0.6 * spread(independent)).all(), (spread(one_hand), spread(independent))


def test_the_starting_noise_of_a_hand_is_shared_and_still_gaussian(shipped_pipeline):
    noise = hand_noise(shipped_pipeline, 400, seed=0, shared=0.9)
    assert noise.std().item() == pytest.approx(1.0, abs=0.03)
    assert torch.corrcoef(noise.flatten(1)[:50])[0, 1:].mean().item() == pytest.approx(0.9, abs=0.05)
    assert torch.equal(noise, hand_noise(shipped_pipeline, 400, seed=0, shared=0.9))


def test_ddim_inversion_finds_noise_that_denoises_back_to_the_digit(shipped_pipeline):
    pipe = shipped_pipeline
    settings = pipe.settings([5], seed=2, sampler="ddim", steps=50, guidance_scale=1.0)
    digit = pipe.generate(settings)
    noise = invert(pipe, digit, 5, steps=50)
    back = final_image(pipe.denoise(noise, settings.labels, settings, pipe.timesteps(50)))
    fresh = pipe.generate(pipe.settings([5], seed=3, sampler="ddim", steps=50, guidance_scale=1.0))
    assert (back - digit).abs().mean() < 0.3 * (fresh - digit).abs().mean()


@pytest.fixture(scope="module")
def strangers_hand(shipped_pipeline):
    """The hands of 0-9 written by strangers (independent samples, seed 7): what a hand copied is compared with."""
    ten = list(range(10))
    return style.hand(shipped_pipeline.generate(shipped_pipeline.settings(ten, 7)), ten)


@pytest.mark.parametrize("digit, slant, width", [(3, 0.5, 40), (3, -0.3, 36), (7, -0.3, 20), (1, -0.8, 6), (5, 0.8, 46)])
def test_a_number_in_your_hand_is_every_digit_asked_for_and_near_your_hand(shipped_pipeline, strangers_hand, digit, slant, width):
    pipe, classifier = shipped_pipeline, load_classifier()
    drawing = to_model_input(pen_drawing(digit, slant, width))[0]
    ten = list(range(10))
    written = final_image(write_like_steps(pipe, draw_settings(pipe, ten, 0), drawing, digit))
    assert class_probabilities(classifier, written).argmax(1).tolist() == ten
    yours = style.hand(drawing, [digit])[0]
    # On the survey's 50 drawings, 0.38 of the strangers' distance (docs/write.md).
    assert style.distance(style.hand(written, ten), yours).mean() < 0.6 * style.distance(strangers_hand, yours).mean()


def test_a_number_in_your_hand_is_written_the_same_each_time(shipped_pipeline):
    pipe, drawing = shipped_pipeline, to_model_input(pen_drawing(3, 0.5, 40))[0]
    first, again = (final_image(write_like_steps(pipe, draw_settings(pipe, [1, 2], 0), drawing, 3)) for _ in range(2))
    assert torch.equal(first, again)


def test_writing_refuses_settings_it_cannot_write_with(shipped_pipeline):
    pipe = shipped_pipeline
    with pytest.raises(SettingError, match="sampler must be a deterministic one"):
        write_steps(pipe, pipe.settings([1, 2], sampler="ddpm", steps=20))
    with pytest.raises(SettingError, match="samples_per_digit must be 1"):
        write_steps(pipe, pipe.settings([1, 2], samples_per_digit=2))
    with pytest.raises(SettingError, match="digit must be an integer from 0 to 9"):
        invert(pipe, torch.zeros(1, 1, 28, 28), 11)


def test_write_cli_writes_the_line_and_its_animation(tmp_path):
    png, gif = tmp_path / "n.png", tmp_path / "n.gif"
    result = run_here("-m", "diffusion.write", "20 26", "--seed", "0", "--png", str(png), "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    assert "the classifier reads it as: 2 0 2 6" in result.stdout and "its hand: leaning" in result.stdout
    with Image.open(png) as picture:
        scale = picture.height // 32
        assert picture.size == (scale * (4 * 30 + 2 + GAP), scale * 32) and scale >= 4
    with Image.open(gif) as animation:
        assert animation.n_frames >= media.MIN_FRAMES


def test_write_cli_in_your_hand(tmp_path):
    drawing, png = tmp_path / "three.png", tmp_path / "mine.png"
    pen_drawing(3, slant=0.3, width=24).save(drawing)
    result = run_here("-m", "diffusion.write", "0123456789", "--like", str(drawing), "--png", str(png))
    assert result.returncode == 0, result.stderr
    assert "your digit reads as a 3" in result.stdout
    assert "the classifier reads it as: 0 1 2 3 4 5 6 7 8 9" in result.stdout and png.exists()


@pytest.mark.parametrize("args, message", [
    (["", "--png", "OUT"], "argument number: must be 1 to 12 digits"),
    (["12a", "--png", "OUT"], "argument number: must be 1 to 12 digits, 0 to 9, with spaces between them if you like, not '12a'"),
    (["1234567890123", "--png", "OUT"], "argument number: must be 1 to 12 digits"),
    (["12", "--png", "OUT", "--sampler", "ddpm"], "argument --sampler: invalid choice"),
    (["12", "--png", "OUT", "--guidance", "-1"], "argument --guidance: must be a number from 0 to 100, not -1.0"),
    (["12"], "give --png, --gif or both"),
    (["12", "--png", "OUT", "--drawn-digit", "3"], "--drawn-digit says what the --like picture shows: give --like too"),
    (["12", "--png", "OUT", "--like", "WHITE"], "the picture is empty or one flat colour"),
])
def test_write_cli_bad_arguments_exit_with_one_line(tmp_path, args, message):
    files = {"OUT": tmp_path / "out.png", "WHITE": tmp_path / "white.png"}
    Image.new("RGB", (100, 100), "white").save(files["WHITE"])
    result = run_here("-m", "diffusion.write", *[str(files.get(arg, arg)) for arg in args])
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not files["OUT"].exists()

