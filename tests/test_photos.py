"""Photos of handwriting: phone-like pictures of digits on paper (tests/photo_survey.py) are read as
the digit written and finished as it, whatever the defect; a page with no digit is refused."""

import numpy as np
import pytest
import torch

from diffusion.classifier import load_classifier
from diffusion.edit import NotADigitError, PictureError, read_digit, to_model_input
from diffusion.paper import ink

from . import photo_survey
from .write_survey import pen_drawing

PER_DIGIT, PRINTED = 6, 1  # per defect: 60 MNIST test digits and 10 printed ones (the survey takes more)


@pytest.mark.slow  # needs MNIST
@pytest.mark.parametrize("defect", list(photo_survey.DEFECTS))
def test_photos_are_read_as_written_and_finished_as_it(shipped_pipeline, mnist_root, defect, capsys):
    pictures, labels = photo_survey.photo_set(defect, mnist_root, PER_DIGIT, PRINTED)
    read, finished = photo_survey.read_and_finished(shipped_pipeline, load_classifier(), pictures)
    read_right = (read == labels).float().mean().item()
    finished_right = ((read == labels) & (finished == labels)).float().mean().item()
    with capsys.disabled():
        print(f"\n{defect}: {len(labels)} photos, read as written {read_right:.1%}, finished as it {finished_right:.1%}")
    assert read_right >= 0.95 and finished_right >= 0.95


@pytest.mark.parametrize("defect", [d for d in photo_survey.DEFECTS if d != "shadow"])
def test_a_photo_of_a_blank_page_is_refused(defect):
    """Paper alone, with the defect: no digit is invented from its light, noise or printed lines.
    (A sharp shadow across a blank page can still be read as a digit: docs/edits-and-morphs.md.)"""
    refused = photo_survey.refused_blank_pages(load_classifier(), defect)
    assert refused >= 18, f"{refused} of 20 blank pages refused"


@pytest.mark.parametrize("digit", [1, 4, 7])
def test_a_pencil_on_lines_darker_than_it_keeps_its_digit_and_loses_the_lines(digit):
    """An exercise book's grid printed strongly in violet on grey paper is darker than the pencil
    digit written on it (the lines' darkness 0.68 of the paper's shade, the pencil's 0.52): the
    digit is read as written, and no ink is left away from it."""
    page = photo_survey.Page(np.random.default_rng(digit))
    page.paper, page.ink_colour = np.full_like(page.paper, 0.8), np.array(photo_survey.INKS["pencil"], np.float32)
    grid = np.maximum(photo_survey.lines(60, 2.5, 7, vertical=False), photo_survey.lines(60, 2.5, 23, vertical=True))
    photo_survey.print_on(page, grid, (0.35, 0.25, 0.6))
    page.write(photo_survey.drawn(page, pen_drawing(digit, 0.1, 8)))
    picture = page.photo()
    assert read_digit(load_classifier(), to_model_input(picture)[0]) == digit
    rows, columns = np.nonzero(ink(picture))
    top, left = page.centre[0] - page.digit_height / 2, page.centre[1] - page.digit_height / 2
    assert rows.min() >= top - 10 and rows.max() <= top + page.digit_height + 10, "no line left above or below the digit"
    assert columns.min() >= left - 10 and columns.max() <= left + page.digit_height + 10, "nor beside it"


class FixedReading(torch.nn.Module):
    """A classifier that gives every picture the same logits."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor([logits]), requires_grad=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(images), -1)


def test_a_picture_the_classifier_is_unsure_of_is_not_given_an_invented_digit():
    picture = torch.zeros(1, 1, 28, 28)
    unsure = FixedReading([0.0] * 9 + [1.0])  # a 9 at 23%
    with pytest.raises(NotADigitError, match=r"does not look like a digit: the classifier is at most 23% sure \(it reads a 9\)"):
        read_digit(unsure, picture)
    assert issubclass(NotADigitError, PictureError), "shown as the page's message, like every picture error"
    assert read_digit(unsure, picture, sure=0) == 9, "with the digit chosen, any reading will do"
    assert read_digit(FixedReading([0.0] * 9 + [5.0]), picture) == 9  # 94%
