"""Write a whole number in one hand, or in the hand of a digit you drew.

    python -m diffusion.write 2026 --png 2026.png --gif 2026.gif          # a number, in the hand of seed 0
    python -m diffusion.write 0123456789 --like my-three.png --png mine.png   # in your own hand

A digit's class comes from its label, and its hand (style.py: slant, stroke width, size) partly from
its starting noise x_T. Starting every digit of a number from the same noise alone leaves their
slants almost as varied as a stranger's each (docs/write.md measures it), so a number is written
in one hand in two ways at once:
- its digits start from mostly the same noise: x_T = sqrt(SHARED) z + sqrt(1 - SHARED) z_i, z shared
  by the number and z_i each digit's own (still a Gaussian draw, as in training);
- while the digits take shape (timesteps HAND_INTERVAL), the model's estimate of each clean digit is
  moved to the number's hand (style.towards), and the noise prediction made to match it, as
  inpainting tells the model its known pixels (samplers.with_known_pixels). The hand is the
  digits' own mean at that step, or a given one. The last steps are the model's own, to keep the
  strokes crisp.
In your hand: your digit is run backwards along the deterministic DDIM path to its starting noise
(DDIM inversion: Song et al. 2021, eq. 12 towards noise; Mokady et al. 2023 invert unguided, as
here), every digit starts from that noise, and your digit's hand is the one they are moved to.
Both yield the pipeline's Steps, all the number's digits as one batch, so they stream and animate
like everything else.
"""

import math
from typing import Iterator

import numpy as np
import torch

from . import cli, edit, media, style
from .classifier import DEFAULT_PATH as CLASSIFIER_PATH
from .classifier import class_probabilities, load_classifier
from .morph import reading
from .pipeline import DEFAULT_WEIGHTS, Pipeline
from .samplers import EpsFn, Step, Steps, classifier_free_guidance, predict_x0
from .settings import SettingError, Settings

MAX_DIGITS = 12
SHARED = 0.9  # of the starting noise's variance that a number's digits share
HAND_INTERVAL = (150, 800)  # the timesteps at which the digits are moved to the hand: where they take shape
INVERSION_STEPS = 50  # DDIM steps from your digit back to x_T: more follow the path more closely
GAP = 14  # px at 28x28 a digit: the space typed between groups of digits
LINE_SCALE = 4  # the PNG of a line: 112 px a digit
DETERMINISTIC_SAMPLERS = ("dpmpp", "ddim")  # a shared start gives a shared hand only on a deterministic path


def parse_number(text) -> tuple[list[int], list[int]]:
    """(digits, gaps): the digits of a number as typed, and after how many digits each space
    falls (for the picture of the line). Raises SettingError saying what is allowed."""
    allowed = f"1 to {MAX_DIGITS} digits, 0 to 9, with spaces between them if you like"
    if not isinstance(text, str) or not text.strip():
        raise SettingError("number", allowed, text, f"type a number to write: {allowed}")
    others = sorted({character for character in text if not (character.isascii() and character.isdigit()) and character != " "})
    if others:
        raise SettingError("number", allowed, text,
                           f"a number may hold only the digits 0 to 9 and spaces, not {' '.join(map(repr, others))}")
    digits = [int(character) for character in text if character != " "]
    if len(digits) > MAX_DIGITS:
        raise SettingError("number", allowed, text, f"that is {len(digits)} digits; this writes up to {MAX_DIGITS}")
    gaps, count = [], 0
    for character in text.strip():
        if character == " " and count not in gaps:
            gaps.append(count)
        count += character != " "
    return digits, gaps


def hand_noise(pipe: Pipeline, count: int, seed: int, shared: float = SHARED) -> torch.Tensor:
    """Starting noise (count, C, H, W) for one hand: sqrt(shared) of one draw that every digit
    shares, plus sqrt(1 - shared) of each digit's own; each is N(0, I), as the model was trained on."""
    if not 0 <= shared <= 1:
        raise SettingError("shared", "a number from 0 to 1", shared)
    generator = torch.Generator(pipe.device).manual_seed(seed)
    common = pipe.starting_noise(1, generator)
    own = pipe.starting_noise(count, generator)
    return math.sqrt(shared) * common + math.sqrt(1 - shared) * own


def check(settings: Settings) -> None:
    """SettingError for settings a number cannot be written with."""
    if settings.sampler not in DETERMINISTIC_SAMPLERS:
        raise SettingError("sampler", f"a deterministic one ({', '.join(DETERMINISTIC_SAMPLERS)})", settings.sampler)
    if settings.samples_per_digit != 1:
        raise SettingError("samples_per_digit", "1 (a number is written once)", settings.samples_per_digit)


def in_hand(eps_fn: EpsFn, pipe: Pipeline, digits: tuple[int, ...], hand: np.ndarray | None = None) -> EpsFn:
    """The noise prediction of digits written in one hand: at timesteps in HAND_INTERVAL, the clean
    estimate x0 moved to the hand (style.towards; None: the digits' mean hand at that step), and
    eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar) (Ho et al. eq. 4) to match."""
    low, high = HAND_INTERVAL

    def eps_fn_in_hand(x: torch.Tensor, t: int) -> torch.Tensor:
        eps = eps_fn(x, t)
        if not low <= t <= high:
            return eps
        alpha_bar = pipe.schedule.alphas_cumprod[t].item()
        x0 = style.towards(predict_x0(x, eps, alpha_bar), digits, hand)
        return (x - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)

    return eps_fn_in_hand


def write_steps(pipe: Pipeline, settings: Settings, noise: torch.Tensor | None = None,
                hand: np.ndarray | None = None) -> Steps:
    """The denoising of a number, its digits (settings.digits, in order) as one batch in one hand:
    from noise (1 or len(digits) images; by default hand_noise of the settings' seed), moved to
    `hand` (style.hand; by default their own mean). The last Step's x holds the digits, in order."""
    check(settings)
    count = len(settings.digits)
    x = hand_noise(pipe, count, settings.seed) if noise is None else noise.to(pipe.device).expand(count, -1, -1, -1)
    return pipe.denoise(x, settings.labels, settings, pipe.timesteps(settings.steps),
                        adjust=lambda eps_fn: in_hand(eps_fn, pipe, settings.digits, hand))


@torch.inference_mode()
def invert(pipe: Pipeline, image: torch.Tensor, digit: int, steps: int = INVERSION_STEPS) -> torch.Tensor:
    """The starting noise x_T (1, C, H, W) whose DDIM path under `digit` (unguided) ends at the image
    (1, C, H, W) in [-1, 1]: DDIM's eq. 12 run from clean to noisy, at evenly spaced timesteps,
    with each step's noise predicted at the step's start (the usual approximation)."""
    if not (isinstance(digit, int) and 0 <= digit < pipe.model.config.num_classes):
        raise SettingError("digit", f"an integer from 0 to {pipe.model.config.num_classes - 1}", digit)
    x = image.to(pipe.device).float()
    eps_fn = classifier_free_guidance(pipe.denoiser, torch.tensor([digit], device=pipe.device), 1.0,
                                      pipe.model.config.null_label)
    rising = pipe.schedule.timesteps(steps)[::-1]  # t_1 < t_2 < ... < T - 1
    alpha_bars = [1.0] + pipe.schedule.alphas_cumprod[rising].tolist()  # clean, then at each timestep
    for i in range(len(rising)):
        eps = eps_fn(x, rising[max(i - 1, 0)])  # the noise at the step's start (from clean: as at t_1)
        x0 = predict_x0(x, eps, alpha_bars[i])
        x = math.sqrt(alpha_bars[i + 1]) * x0 + math.sqrt(1 - alpha_bars[i + 1]) * eps  # eq. 12, eta = 0, towards noise
    return x


def write_like_steps(pipe: Pipeline, settings: Settings, image: torch.Tensor, digit: int) -> Steps:
    """write_steps in the hand of your digit: image (1, 1, 28, 28) in [-1, 1] (edit.to_model_input
    makes one of any picture), a `digit`. Its starting noise (invert) is every digit's, its hand
    (style.hand, within style.REACH) the one they are moved to."""
    return write_steps(pipe, settings, invert(pipe, image, digit), style.within_reach(style.hand(image, [digit])[0]))


def line_animation(steps: Steps, count: int, gaps: list[int]) -> Iterator[tuple[Step, list[np.ndarray]]]:
    """The denoising animation of a number of `count` digits in a line (x_t above x0), with the
    spaces typed between them: (step, the frames it adds), as media.denoising_animation."""
    for step, frames in media.denoising_animation(steps, num_digits=count):
        yield step, [media.spaced(frame, gaps, GAP) for frame in frames]


def line(images: torch.Tensor, gaps: list[int]) -> np.ndarray:
    """The written number (N, 1, 28, 28) as one line, uint8, with the spaces typed between its digits."""
    return media.spaced(media.grid(media.to_uint8(images), columns=len(images)), gaps, GAP)


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.write",
                           description="Write a number in one hand: a new one (--seed), or yours (--like).")
    p.add_argument("number", help=f"up to {MAX_DIGITS} digits, spaces allowed (quote them): 2026, \"27 11 2026\"")
    p.add_argument("--seed", type=int, default=0, help="the hand: another seed writes it in another hand")
    p.add_argument("--like", help="a picture of one digit (PNG, JPEG, ...): write in its hand")
    p.add_argument("--drawn-digit", type=int, choices=range(10), metavar="0-9",
                   help="--like: the digit the picture shows (default: the one the classifier reads)")
    p.add_argument("--sampler", choices=DETERMINISTIC_SAMPLERS, help="default: the weights' recommendation")
    p.add_argument("--steps", type=int, help="denoising steps (default: the weights' recommendation)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the weights', "
                                                  f"{edit.DRAW_GUIDANCE_SCALE:g} at every step with --like)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--png", type=cli.file_ending(".png"), help="write the line as a PNG")
    p.add_argument("--gif", type=cli.file_ending(".gif"), help="write its denoising as a GIF")
    args = p.parse_args()
    if not (args.png or args.gif):
        p.error("give --png, --gif or both: where to write the number")
    if args.drawn_digit is not None and args.like is None:
        p.error("--drawn-digit says what the --like picture shows: give --like too")
    with cli.settings_as_flags(p, {"number": "number"}):
        digits, gaps = parse_number(args.number)
    classifier = load_classifier(CLASSIFIER_PATH)
    yours = None if args.like is None else your_digit(p, args.like, args.drawn_digit, classifier)
    pipe = Pipeline.load(args.weights, device=args.device)
    options = {"sampler": args.sampler, "steps": args.steps, "guidance_scale": args.guidance}
    with cli.settings_as_flags(p, {"guidance_scale": "--guidance", "steps": "--steps", "seed": "--seed",
                                   "sampler": "--sampler"}):
        if yours is None:
            steps = write_steps(pipe, pipe.settings(digits, args.seed, **options))
        else:
            steps = write_like_steps(pipe, edit.draw_settings(pipe, digits, args.seed, **options), *yours)
        frames = []
        for step, step_frames in line_animation(steps, len(digits), gaps):
            frames += step_frames
    print(f"the classifier reads it as: {reading(class_probabilities(classifier, step.x))}")
    print(f"its hand: {style.describe(style.hand(step.x, digits).mean(axis=0))}")
    if args.png:
        media.save_png(media.upscale(line(step.x, gaps), LINE_SCALE), args.png)
        print(f"wrote {args.png}")
    if args.gif:
        media.save_animation(frames, args.gif)
        print(f"wrote {args.gif}")


def your_digit(parser, path: str, digit: int | None, classifier) -> tuple[torch.Tensor, int]:
    """--like's picture as the model's input, and the digit it shows (read, unless given)."""
    try:
        image = edit.to_model_input(edit.open_picture(path))[0]
        if digit is None:
            digit = edit.read_digit(classifier, image, instead="say which digit it is with --drawn-digit")
            print(f"your digit reads as a {digit}")
    except (OSError, edit.PictureError) as e:
        parser.error(f"{e.strerror if isinstance(e, OSError) else e} ({path})")
    return image, digit


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.write")
