"""What the classifier reads each step's x0 as: probabilities, when they pass 50%, and their charts."""

import re
import xml.etree.ElementTree as ElementTree

import torch

from diffusion import media
from diffusion.classifier import class_probabilities, first_passing, load_classifier
from diffusion.measure import confidence, variety

SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def test_each_steps_reading_is_a_distribution_and_the_last_agrees_with_the_final_image(each_shipped_pipeline):
    pipe = each_shipped_pipeline
    classifier = load_classifier()
    for sampler, steps in (("dpmpp", 6), ("ddim", 12), ("ddpm", 20)):
        steps_made = list(pipe.sample_steps(pipe.settings([2, 5, 8], sampler=sampler, steps=steps, seed=4)))
        readings = torch.stack([class_probabilities(classifier, step.x0) for step in steps_made])
        assert readings.shape == (steps, 3, 10)
        assert torch.isfinite(readings).all() and (readings >= 0).all()
        torch.testing.assert_close(readings.sum(-1), torch.ones(steps, 3), rtol=0, atol=1e-5)
        final = class_probabilities(classifier, steps_made[-1].x)
        torch.testing.assert_close(readings[-1], final, rtol=0, atol=1e-4)
        assert readings[-1].argmax(1).tolist() == [2, 5, 8]


def test_first_passing_finds_the_first_reading_over_the_threshold():
    def reading(p_of_label):  # ten probabilities, p_of_label for class 3, the rest spread evenly
        return [p_of_label if k == 3 else (1 - p_of_label) / 9 for k in range(10)]

    readings = torch.tensor([[reading(0.1), reading(0.1)], [reading(0.6), reading(0.5)], [reading(0.4), reading(0.2)]])
    assert first_passing(readings, torch.tensor([3, 3])) == [1, None]  # 0.5 is not past 50%
    assert first_passing(readings, torch.tensor([3, 3]), threshold=0.3) == [1, 1]


def test_the_chart_has_a_line_per_class_a_point_per_reading_and_marks_the_pass():
    readings = [[0.1] * 10, [0.05] * 3 + [0.55] + [0.05] * 6, [0.0] * 3 + [1.0] + [0.0] * 6]
    [passed] = first_passing(torch.tensor(readings)[:, None], torch.tensor([3]))
    svg = parse_svg(media.probability_chart(readings, [1, 4, 6], 6, digit=3, passed=passed))
    lines = svg.findall(f"{SVG}polyline")
    assert sorted(int(line.get("data-digit")) for line in lines) == list(range(10))
    assert all(len(line.get("points").split()) == 3 for line in lines)
    highlighted = [line for line in lines if line.get("stroke") == media.HIGHLIGHT]
    assert [line.get("data-digit") for line in highlighted] == ["3"]
    xs = [float(point.split(",")[0]) for point in highlighted[0].get("points").split()]
    assert xs[0] < xs[1] < xs[2], "steps left to right"
    [marker] = svg.findall(f"{SVG}circle")
    assert float(marker.get("cx")) == xs[1], "the pass is marked at step 4, the first reading over 50%"
    assert not parse_svg(media.probability_chart([[0.1] * 10], [1], 1, digit=3, passed=None)).findall(f"{SVG}circle")


def test_the_bars_show_ten_classes_in_proportion():
    probabilities = [0.0, 0.1, 0.0, 0.7, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0]
    svg = parse_svg(media.probability_bars(probabilities, digit=3))
    bars = {int(bar.get("data-digit")): float(bar.get("height")) for bar in svg.findall(f"{SVG}rect")}
    assert sorted(bars) == list(range(10))
    assert bars[3] > bars[5] > bars[1] > bars[0] > 0  # every class shows, at least as a hairline
    assert abs(bars[3] / bars[1] - 7) < 1e-6
    assert re.search(r">70%<", media.probability_bars(probabilities, digit=3))


def test_stronger_guidance_reads_surer_and_less_varied(shipped_pipeline):
    """The guidance tab's two measures, on the shipped model with guidance at every step, as the tab
    shows it: guidance 0 ignores the digit and varies most; guided samples are read as the digit
    and vary less."""
    classifier = load_classifier()
    labels = torch.full((6,), 3)
    measures = {}
    for guidance_scale in (0.0, 1.5, 5.0):
        images = shipped_pipeline.generate(shipped_pipeline.settings([3], guidance_scale=guidance_scale, seed=0, samples_per_digit=6,
                                           guidance_interval=shipped_pipeline.all_timesteps))
        measures[guidance_scale] = confidence(classifier, images, labels), variety(classifier, images)
    assert measures[0.0][0] < 0.5 < 0.95 < measures[1.5][0] <= measures[5.0][0] + 0.01
    assert measures[0.0][1] > 1.5 * measures[1.5][1] and measures[0.0][1] > 1.5 * measures[5.0][1]
    same = shipped_pipeline.generate(shipped_pipeline.settings([3], seed=0)).repeat(4, 1, 1, 1)
    assert variety(classifier, same) == 0.0
