"""Writing in one hand: the figures in docs/write.md, measured on the shipped weights.

    MNIST_ROOT=../shared/data python -m tests.write_survey            # about 6 minutes on 2 CPU cores
    MNIST_ROOT=../shared/data python -m tests.write_survey --mnist    # style.MNIST_MEANS and MNIST_SPREAD
    MNIST_ROOT=../shared/data python -m tests.write_survey --wider    # the wider hands alone (about 2 minutes)
    python -m tests.write_survey --time                               # what writing costs, against a plain batch

Numbers: 100 numbers of 6 digits, number k's digits drawn by random.Random(k) and written with
seed k at the default settings, three ways: a plain batch of independent samples (the baseline),
the shared starting noise alone, the hand step alone, and write.write_steps (both). For each,
the classifier's accuracy on every digit and the spread of each measure within a number (its
standard deviation over the number's 6 digits, averaged over the 100 numbers), of the raw measures
and of the hands (style.hand: less each digit's typical measures).

In your hand: 50 drawings, 40 MNIST test digits (the first 4 of each class) sheared and thickened or
thinned at random, and 10 digits drawn here as pen strokes at random slants and widths, each made
into the model's input as the app makes a drawing (edit.to_model_input). From each, the ten digits
0-9 are written in its hand three ways (its inverted noise alone, its hand alone from fresh noise,
and both: write.write_like_steps), beside random samples of the same digits at the default settings.

Wider hands: 50 more drawings (wider_hands: steeper slants both ways, heavier and lighter pens, and
drawings photographed on paper), the ten digits written in each one's hand by write_like_steps.
"""

import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from diffusion import Pipeline, media, style, write
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.data import default_data_dir, load_mnist, to_model_range
from diffusion.edit import draw_settings, to_model_input
from diffusion.samplers import final_image

from . import photo_survey

NUMBERS, NUMBER_LENGTH = 100, 6
CANVAS = 280  # px: Draw's canvas
# Pen strokes of each digit, as points in a unit box (x right, y down), joined by straight lines.
STROKES = {
    0: [(0.5 + 0.32 * np.sin(a), 0.5 - 0.44 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 25)],
    1: [(0.5, 0.05), (0.5, 0.95)],
    2: [(0.2, 0.3), (0.35, 0.1), (0.65, 0.1), (0.8, 0.3), (0.7, 0.5), (0.2, 0.95), (0.85, 0.95)],
    3: [(0.2, 0.15), (0.7, 0.1), (0.75, 0.3), (0.45, 0.5), (0.8, 0.7), (0.7, 0.92), (0.2, 0.9)],
    4: [(0.6, 0.95), (0.6, 0.05), (0.15, 0.65), (0.85, 0.65)],
    5: [(0.8, 0.08), (0.3, 0.08), (0.25, 0.45), (0.65, 0.42), (0.8, 0.65), (0.65, 0.92), (0.2, 0.88)],
    6: [(0.7, 0.08), (0.35, 0.4), (0.25, 0.75), (0.45, 0.93), (0.72, 0.8), (0.7, 0.58), (0.4, 0.55), (0.3, 0.7)],
    7: [(0.15, 0.1), (0.85, 0.1), (0.4, 0.95)],
    8: [(0.5, 0.5), (0.25, 0.3), (0.5, 0.08), (0.75, 0.3), (0.5, 0.5), (0.2, 0.72), (0.5, 0.94), (0.8, 0.72), (0.5, 0.5)],
    9: [(0.75, 0.3), (0.5, 0.1), (0.25, 0.3), (0.45, 0.5), (0.75, 0.35), (0.7, 0.95)],
}


def number_digits(seed: int, length: int = NUMBER_LENGTH) -> list[int]:
    generator = random.Random(seed)
    return [generator.randrange(10) for _ in range(length)]


def pen_drawing(digit: int, slant: float, width: int) -> Image.Image:
    """A digit drawn as pen strokes on Draw's canvas, black on white, leaning by `slant` (x moved per
    unit up) with a pen `width` px wide."""
    picture = Image.new("L", (CANVAS, CANVAS), 255)
    points = [(CANVAS * (0.2 + 0.6 * (x + slant * (0.5 - y))), CANVAS * (0.1 + 0.8 * y)) for x, y in STROKES[digit]]
    ImageDraw.Draw(picture).line(points, fill=0, width=width, joint="curve")
    return picture


def drawings(data_dir: str, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """The 50 drawings as model inputs (50, 1, 28, 28), and the digit each shows."""
    images, labels = load_mnist(data_dir, train=False)
    generator = random.Random(seed)
    pictures, digits = [], []
    for digit in range(10):
        for index in (labels == digit).nonzero()[:4, 0].tolist():
            changed = style.thicken(style.shear(to_model_range(images[index:index + 1]), [generator.uniform(-0.5, 0.5)]),
                                    [generator.uniform(-0.7, 0.9)])
            drawn = Image.fromarray(255 - media.enlarge(media.to_uint8(changed)[0], CANVAS))
            pictures.append(to_model_input(drawn)[0])
            digits.append(digit)
    for digit in range(10):
        drawn = pen_drawing(digit, generator.uniform(-0.4, 0.4), generator.randrange(10, 32))
        pictures.append(to_model_input(drawn)[0])
        digits.append(digit)
    return torch.cat(pictures), digits


def wider_hands(data_dir: str, seed: int = 1) -> tuple[torch.Tensor, list[int]]:
    """50 hands beyond the drawings', as model inputs (50, 1, 28, 28), and the digit each shows: 20
    MNIST test digits (the 5th and 6th of each class) leaning steeply (sheared by 0.5 to 0.9, right
    and left in turn), redrawn on Draw's canvas down their strokes' middle with a broad pen (36 to
    48 px on 280, MNIST's own is about 23) or a fine one (5 to 9 px) in turn;
    10 pen drawings leaning 0.4 to 0.8 either way, in a fine pen (4 to 8 px on 280) or a broad one
    (34 to 48 px) in turn; and 20 photographed (tests/photo_survey.py's "phone photo": grey paper in
    uneven light, noise and JPEG, tilted, half of it ruled): 10 MNIST test digits (the 7th of each
    class) and 10 pen drawings."""
    images, labels = load_mnist(data_dir, train=False)
    generator, camera = random.Random(seed), np.random.default_rng(seed)
    pictures = []
    for digit in range(10):
        for k, index in enumerate((labels == digit).nonzero()[4:6, 0].tolist()):
            leaning = style.shear(to_model_range(images[index:index + 1]), [(-1) ** k * generator.uniform(0.5, 0.9)])
            big = F.interpolate((leaning + 1) / 2, size=(CANVAS, CANVAS), mode="bicubic")[0, 0].numpy()
            pen = generator.uniform(36, 48) if digit % 2 == k else generator.uniform(5, 9)
            redrawn = photo_survey.thinned(big > 0.5, pen)
            pictures.append(to_model_input(Image.fromarray((255 * (1 - redrawn)).round().astype(np.uint8)))[0])
    for digit in range(10):
        width = generator.randrange(4, 9) if digit % 2 else generator.randrange(34, 49)
        pictures.append(to_model_input(pen_drawing(digit, generator.choice([-1, 1]) * generator.uniform(0.4, 0.8), width))[0])
    for digit in range(10):
        index = (labels == digit).nonzero()[6, 0].item()
        pictures.append(to_model_input(photo_survey.photo("phone photo", images[index], camera))[0])
    for digit in range(10):
        drawing = pen_drawing(digit, generator.uniform(-0.4, 0.4), generator.randrange(10, 32))
        pictures.append(to_model_input(photo_survey.photo("phone photo", drawing, camera))[0])
    return torch.cat(pictures), [d for d in range(10) for _ in range(2)] + list(range(10)) * 3


def accuracy(classifier, images: torch.Tensor, digits) -> float:
    return (class_probabilities(classifier, images).argmax(1) == torch.as_tensor(list(digits))).float().mean().item()


def within_number_spread(images: torch.Tensor, digits: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(raw, hand): each measure's spread within a number, averaged over the numbers."""
    raw, hands = style.measures(images), style.hand(images, digits)
    return tuple(values.reshape(-1, NUMBER_LENGTH, 3).std(axis=1).mean(axis=0) for values in (raw, hands))


def numbers_survey(pipe: Pipeline, classifier) -> None:
    ways = {"independent samples": lambda settings: pipe.generate(settings),
            "shared noise alone": lambda settings: final_image(pipe.denoise(
                write.hand_noise(pipe, NUMBER_LENGTH, settings.seed), settings.labels, settings,
                pipe.timesteps(settings.steps))),
            "the hand step alone, independent noise": lambda settings: final_image(write.write_steps(
                pipe, settings, write.hand_noise(pipe, NUMBER_LENGTH, settings.seed, shared=0))),
            "one hand (write_steps)": lambda settings: final_image(write.write_steps(pipe, settings))}
    digits = [d for seed in range(NUMBERS) for d in number_digits(seed)]
    print(f"{NUMBERS} numbers of {NUMBER_LENGTH} digits, seeds 0-{NUMBERS - 1}, default settings; spread within a "
          f"number of {', '.join(style.MEASURES)}")
    baseline, rows = None, {}
    for name, way in ways.items():
        images = torch.cat([way(pipe.settings(number_digits(seed), seed)) for seed in range(NUMBERS)])
        raw, hands = within_number_spread(images, digits)
        baseline = baseline or (raw, hands)
        read = class_probabilities(classifier, images).argmax(1).tolist()
        misread = [f"number {k // NUMBER_LENGTH}'s {d} as {r}" for k, (d, r) in enumerate(zip(digits, read)) if d != r]
        print(f"  {name}: accuracy {accuracy(classifier, images, digits):.1%} (misread: {', '.join(misread) or 'none'}); "
              f"raw {fmt(raw)} (x{fmt(raw / baseline[0], 2)}); hand {fmt(hands)} (x{fmt(hands / baseline[1], 2)})",
              flush=True)
        rows[name] = media.to_uint8(images).reshape(NUMBERS, NUMBER_LENGTH, 28, 28)
    figure = np.concatenate([rows[name][seed] for seed in range(4) for name in ("independent samples", "one hand (write_steps)")])
    media.save_png(media.upscale(media.grid(figure, columns=NUMBER_LENGTH), 3), "assets/write-one-hand.png")
    print("wrote assets/write-one-hand.png: numbers 0-3, each as independent samples above the same in one hand")


def like_survey(pipe: Pipeline, classifier, data_dir: str) -> None:
    pictures, drawn = drawings(data_dir)
    ten = list(range(10))
    ways = {"random samples": lambda k, picture, digit: pipe.generate(pipe.settings(ten, 1000 + k)),
            "inverted noise alone": lambda k, picture, digit: final_image(pipe.denoise(
                write.invert(pipe, picture, digit).expand(10, -1, -1, -1), torch.tensor(ten),
                draw_settings(pipe, ten, k), pipe.timesteps(pipe.sampling_config.steps))),
            "hand alone, fresh noise": lambda k, picture, digit: final_image(write.write_steps(
                pipe, draw_settings(pipe, ten, k), hand=style.hand(picture, [digit])[0])),
            "in your hand (write_like_steps)": lambda k, picture, digit: final_image(write.write_like_steps(
                pipe, draw_settings(pipe, ten, k), picture, digit)),
            "in your hand, the inverted noise scaled to a Gaussian draw's size": lambda k, picture, digit: final_image(
                write.write_steps(pipe, draw_settings(pipe, ten, k), gaussian_sized(write.invert(pipe, picture, digit)),
                                  style.hand(picture, [digit])[0]))}
    norms = [write.invert(pipe, pictures[k:k + 1], digit).norm().item() for k, digit in enumerate(drawn)]
    print(f"  the inverted noise's norm: median {np.median(norms):.1f} (from {min(norms):.1f} to {max(norms):.1f}); "
          f"a Gaussian draw's is about {28:.1f}")
    print(f"in your hand: {len(drawn)} drawings, the ten digits written from each; distance of their hands to the drawing's")
    rows = {}
    for name, way in ways.items():
        written = [way(k, pictures[k:k + 1], digit) for k, digit in enumerate(drawn)]
        distances = [style.distance(style.hand(images, ten), style.hand(pictures[k:k + 1], [drawn[k]])[0]).mean()
                     for k, images in enumerate(written)]
        print(f"  {name}: accuracy {accuracy(classifier, torch.cat(written), ten * len(drawn)):.1%}, "
              f"style distance {np.mean(distances):.2f}", flush=True)
        rows[name] = written
    shown = (0, 5, 10, 15, 20, 25, 30, 35, 42, 47)  # 8 MNIST digits of 8 classes, then two drawn in code
    figure = [np.concatenate([media.to_uint8(pictures[k:k + 1]), np.zeros((1, 28, 28), np.uint8),
                              media.to_uint8(rows["in your hand (write_like_steps)"][k])]) for k in shown]
    media.save_png(media.upscale(media.grid(np.concatenate(figure), columns=12), 2), "assets/write-in-your-hand.png")
    print("wrote assets/write-in-your-hand.png: ten drawings (left), each with the digits 0-9 written in its hand")


def wider_survey(pipe: Pipeline, classifier, data_dir: str) -> None:
    pictures, drawn = wider_hands(data_dir)
    ten = list(range(10))
    kinds = {"leaning steeply, heavy or light pen": range(20), "pen drawings, steep, fine or broad pen": range(20, 30),
             "photographed MNIST digits": range(30, 40), "photographed pen drawings": range(40, 50)}
    print(f"wider hands: {len(drawn)} more drawings, the ten digits written in each one's hand (write_like_steps)")
    written = {k: final_image(write.write_like_steps(pipe, draw_settings(pipe, ten, k), pictures[k:k + 1], digit))
               for k, digit in enumerate(drawn)}
    read = {k: class_probabilities(classifier, images).argmax(1).tolist() for k, images in written.items()}
    for kind, indices in {**kinds, "all": range(len(drawn))}.items():
        misread = [f"drawing {k} (a {drawn[k]})'s {d} as {r}" for k in indices for d, r in zip(ten, read[k]) if d != r]
        right = 1 - len(misread) / (10 * len(indices))
        print(f"  {kind}: accuracy {right:.1%}" + (f" (misread: {', '.join(misread) or 'none'})" if kind != "all" else ""),
              flush=True)
    figure = [np.concatenate([media.to_uint8(pictures[k:k + 1]), np.zeros((1, 28, 28), np.uint8), media.to_uint8(written[k])])
              for k in (0, 3, 20, 21, 30, 35, 40, 45)]
    media.save_png(media.upscale(media.grid(np.concatenate(figure), columns=12), 2), "assets/write-wider-hands.png")
    print("wrote assets/write-wider-hands.png: eight of them (left), each with the digits 0-9 written in its hand")


def gaussian_sized(noise: torch.Tensor) -> torch.Tensor:
    return noise * noise[0].numel() ** 0.5 / noise.norm()


def fmt(values: np.ndarray, places: int = 2) -> str:
    return " / ".join(f"{value:.{places}f}" for value in values)


def mnist_constants(data_dir: str) -> None:
    images, labels = load_mnist(data_dir, train=False)
    measures = style.measures(to_model_range(images))
    means = np.stack([measures[labels == digit].mean(axis=0) for digit in range(10)])
    print("MNIST_MEANS =", tuple(tuple(round(float(v), p) for v, p in zip(row, (1, 2, 1))) for row in means))
    print("MNIST_SPREAD =", tuple(round(float(v), 2) for v in (measures - means[labels]).std(axis=0)))


def timing(pipe: Pipeline, repeats: int = 7) -> None:
    """Median seconds of a plain batch, a number in one hand and the ten digits in your hand (its
    inversion included), taken in turn in one run, so that they share the machine's state."""
    ten = list(range(10))
    settings, drawing = pipe.settings(ten, 0), to_model_input(pen_drawing(3, 0.3, 24))[0]
    runs = {"a plain batch of the ten digits (pipe.generate)": lambda: pipe.generate(settings),
            "the ten in one hand (write_steps)": lambda: final_image(write.write_steps(pipe, settings)),
            "the ten in your hand (write_like_steps)": lambda: final_image(write.write_like_steps(
                pipe, draw_settings(pipe, ten), drawing, 3))}
    times = {name: [] for name in runs}
    for _ in range(repeats + 1):  # the first round warms up
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    baseline = np.median(times[next(iter(runs))][1:])
    for name, seconds in times.items():
        print(f"  {name}: {np.median(seconds[1:]):.3f} s (x{np.median(seconds[1:]) / baseline:.2f}), median of {repeats}")


def main() -> None:
    if "--mnist" in sys.argv[1:]:
        return mnist_constants(default_data_dir())
    if "--time" in sys.argv[1:]:
        return timing(Pipeline.load(device="cpu"))
    if "--wider" in sys.argv[1:]:
        return wider_survey(Pipeline.load(device="cpu"), load_classifier(), default_data_dir())
    pipe, classifier = Pipeline.load(device="cpu"), load_classifier()
    numbers_survey(pipe, classifier)
    like_survey(pipe, classifier, default_data_dir())
    wider_survey(pipe, classifier, default_data_dir())


if __name__ == "__main__":
    main()
