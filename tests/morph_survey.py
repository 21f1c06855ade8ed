"""The figures on the morphs in docs/edits-and-morphs.md, measured on the shipped weights.

    python -m tests.morph_survey          # about 5 minutes on 2 CPU cores

Walks between seeds: each digit, seeds 100-102 to 200-202, 9 frames for the noise's norms and
16 for the steps between neighbours. Walks between digits: all 90 ordered pairs, seeds 0 to 2,
9 frames, read by the classifier.
"""

import statistics

import numpy as np

from diffusion import Pipeline
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.morph import frame_points, morph, morph_ends, morph_noise

SEED_PAIRS = [(100 + k, 200 + k) for k in range(3)]


def grey_levels(images):
    return (images + 1) * 127.5


def seed_walks(pipe: Pipeline) -> None:
    norms = np.concatenate([morph_noise(pipe, seeds, frame_points(9)).flatten(1).norm(dim=1).numpy()
                            for seeds in SEED_PAIRS])
    start, end = morph_noise(pipe, SEED_PAIRS[0], [0.0, 1.0])
    print(f"walks between seeds: frame noise norms {norms.min():.1f} to {norms.max():.1f} (sqrt(784) = 28); "
          f"the straight line's midpoint for seeds {SEED_PAIRS[0]}: {((start + end) / 2).norm():.1f}")
    largest_steps, ends = [], []
    for digit in range(10):
        for seeds in SEED_PAIRS:
            frames = grey_levels(morph(pipe, *morph_ends(pipe, (digit, seeds[0]), (digit, seeds[1])), frame_points(16)))
            largest_steps.append((frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3)).max().item())
            ends.append((frames[-1] - frames[0]).abs().mean().item())
    print(f"  16 frames, largest mean grey-level step between neighbours: max {max(largest_steps):.1f}, "
          f"median {statistics.median(largest_steps):.1f}; ends apart {min(ends):.0f} to {max(ends):.0f} "
          f"(median {statistics.median(ends):.0f}), over {len(ends)} walks")


def digit_walks(pipe: Pipeline) -> None:
    classifier, points = load_classifier(), frame_points(9)
    as_expected, turns = 0, []
    for seed in range(3):
        for start in range(10):
            for end in range(10):
                if start == end:
                    continue
                frames = morph(pipe, *morph_ends(pipe, (start, seed), (end, seed)), points)
                read = class_probabilities(classifier, frames).argmax(1).tolist()
                if (read[0], read[-1]) == (start, end):
                    as_expected += 1
                    turns.append(points[read.index(end)])
    print(f"walks between digits: read as the start digit then the end digit in {as_expected} of 270; the first "
          f"frame read as the end digit at a median point of {statistics.median(turns):.3f} (quartiles "
          f"{np.percentile(turns, 25):.3f} and {np.percentile(turns, 75):.3f})")


if __name__ == "__main__":
    pipeline = Pipeline.load()
    seed_walks(pipeline)
    digit_walks(pipeline)
