"""Guidance distilled into a student (train.py --distill-from): a UNet that takes the guidance
scale as an input, and the loss that teaches it the teacher's guided prediction."""

import dataclasses
import re
import shutil

import pytest
import torch

from diffusion import Pipeline, SamplingConfig, SettingError, classifier_free_guidance
from diffusion.classifier import class_probabilities, load_classifier
from diffusion.io import load_safetensors, save_safetensors
from diffusion.measure import scales_acted
from diffusion.morph import frame_points, morph, morph_ends
from diffusion.pipeline import save_weights
from diffusion.schedule import NoiseSchedule, ScheduleConfig, distillation_loss
from diffusion.unet import UNet

from .conftest import STUDENT_WEIGHTS, TINY_UNET, run_here

NULL = TINY_UNET.null_label


def test_a_new_student_predicts_as_its_teacher_conditionally_at_any_scale():
    torch.manual_seed(0)
    teacher = UNet(TINY_UNET).eval()
    student = UNet(dataclasses.replace(TINY_UNET, guidance_input=10.0)).eval()
    missing = student.load_state_dict(teacher.state_dict(), strict=False).missing_keys
    assert missing and all(name.startswith("guidance_mlp.") for name in missing), "only the guidance input is new"
    x, t, labels = torch.randn(4, 1, 28, 28), torch.tensor([3, 40, 70, 99]), torch.tensor([1, 5, 9, NULL])
    with torch.no_grad():
        expected = teacher(x, t, labels)
        for scales in (None, torch.zeros(4), torch.tensor([0.0, 2.5, 7.0, 10.0])):
            assert torch.allclose(student(x, t, labels, scales), expected, atol=1e-6), scales
        assert torch.allclose(student(x[:1], t[:1], labels[:1], torch.tensor([2.5])), expected[:1], atol=1e-6)


def labelled_teacher(x, t, labels):
    """Stands in for a teacher: predicts each image's label as its noise, so that eps_cond - eps_uncond is known."""
    return labels.float()[:, None, None, None].expand_as(x).clone()


def test_the_distillation_loss_scores_the_teachers_guided_prediction_at_random_scales():
    schedule = NoiseSchedule(ScheduleConfig(num_timesteps=100))
    x0, labels = torch.zeros(2000, 1, 4, 4), torch.arange(2000) % 10
    seen = {}

    def exact_student(x, t, student_labels, scales):
        seen["scales"], seen["labels"] = scales, student_labels
        return NULL + scales[:, None, None, None] * (labelled_teacher(x, t, student_labels) - NULL)  # eps_u + w (eps_c - eps_u)

    loss = distillation_loss(exact_student, labelled_teacher, schedule, x0, labels, torch.Generator().manual_seed(0),
                             label_dropout=0.1, null_label=NULL, max_scale=10.0)
    assert loss.item() == 0.0, "a student that gives the guided prediction scores nothing"
    scales, dropped = seen["scales"], seen["labels"] == NULL
    assert 0 <= scales.min() and scales.max() <= 10
    assert 0.45 <= (scales < 2.5).float().mean() <= 0.55, "half the scales below a quarter of the largest"
    assert 0.07 <= dropped.float().mean() <= 0.13, "a tenth of the labels null, as in training"
    wrong = distillation_loss(lambda x, t, y, w: torch.zeros_like(x), labelled_teacher, schedule, x0, labels,
                              torch.Generator().manual_seed(0), 0.1, NULL, 10.0)
    assert wrong.item() > 1


@pytest.mark.slow  # needs MNIST
def test_train_distills_a_student_that_keeps_its_teachers_settings(tmp_path, mnist_root):
    torch.manual_seed(0)
    teacher_path = tmp_path / "teacher.safetensors"
    recommended = SamplingConfig(sampler="ddim", steps=5, guidance_scale=2.0)
    save_weights(teacher_path, UNet(TINY_UNET), ScheduleConfig(num_timesteps=100), recommended, {"steps": 0})
    result = run_here("train.py", "--distill-from", str(teacher_path), "--data-dir", mnist_root, "--subset", "64",
                        "--batch-size", "32", "--max-steps", "2", "--run-dir", str(tmp_path / "run"),
                        "--out", str(tmp_path / "student.safetensors"))
    assert result.returncode == 0, result.stderr
    student = Pipeline.load(tmp_path / "student.safetensors", device="cpu")
    assert student.model.config == dataclasses.replace(TINY_UNET, guidance_input=10.0)
    assert student.schedule.config.num_timesteps == 100 and student.sampling_config == recommended
    assert student.metadata["training"]["args"]["distill_from"] == str(teacher_path)


class ScaleEcho(torch.nn.Module):
    """Stands in for a student: its 'noise' is eps_u + w (eps_c - eps_u) with each label as eps_c and
    the null label as eps_u, at its guidance scales w (1 if none given); records each call's scales."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, labels, guidance=None):
        scales = torch.ones(len(x)) if guidance is None else guidance
        self.calls.append(scales.tolist())
        return (NULL + scales * (labels.float() - NULL)).view(-1, 1, 1, 1).expand_as(x)


@pytest.mark.parametrize("w, t, guided", [(3.0, 500, True), (3.0, 999, False), (0.5, 999, True), (0.0, 999, True)])
def test_a_student_gives_the_guided_prediction_in_one_evaluation_per_image(w, t, guided):
    labels, x = torch.tensor([2, 4]), torch.zeros(2, 1, 4, 4)
    student = ScaleEcho()
    eps = classifier_free_guidance(student, labels, w, NULL, guidance_interval=(400, 600), distilled=True)(x, t)
    teacher_eps = classifier_free_guidance(ScaleEcho(), labels, w, NULL, guidance_interval=(400, 600))(x, t)
    assert torch.allclose(eps, teacher_eps), "the student and the teacher's guidance mean the same"
    assert len(student.calls) == 1 and len(student.calls[0]) == 2, "one evaluation per image, guided or not"
    assert student.calls[0] == ([w, w] if guided and w > 0 else [1.0, 1.0])


def test_a_students_morph_takes_one_evaluation_per_class_with_the_same_composition():
    labels, shares = torch.tensor([[2, 7], [4, 4]]), torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    x = torch.zeros(2, 1, 4, 4)
    student = ScaleEcho()
    eps = classifier_free_guidance(student, labels, 2.0, NULL, shares, distilled=True)(x, 500)
    assert torch.allclose(eps, classifier_free_guidance(ScaleEcho(), labels, 2.0, NULL, shares)(x, 500))
    assert student.calls == [[2.0] * 4], "two classes, two evaluations per image"


def test_the_pipeline_samples_a_student_and_shared_forward_passes_carry_its_scales(tmp_path):
    torch.manual_seed(0)
    path, student = tmp_path / "student.safetensors", UNet(dataclasses.replace(TINY_UNET, guidance_input=10.0))
    with torch.no_grad():  # as if trained: the guidance input and the blocks' last layers are no longer zero
        for name, p in student.named_parameters():
            if name.startswith("guidance_mlp.") or ".conv2." in name:
                p.normal_(0, 0.1)
    save_weights(path, student, ScheduleConfig(num_timesteps=100),
                 SamplingConfig(sampler="ddim", steps=4, guidance_scale=3.0), {"steps": 0})
    alone, shared = Pipeline.load(path, device="cpu"), Pipeline.load(path, device="cpu", shared=True)
    try:
        settings, x, labels = alone.settings([1, 2], seed=3), torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
        guided = alone.guided(labels, settings)(x, 50)
        assert torch.equal(guided, shared.guided(labels, settings)(x, 50)), "SharedModel passes the scales on"
        assert torch.equal(guided, alone.reusing_forward_passes().guided(labels, settings)(x, 50))
        assert not torch.equal(guided, alone.guided(labels, alone.settings([1, 2], guidance_scale=1.0))(x, 50))
        assert torch.equal(alone.generate(settings), shared.generate(settings)), "the same images through SharedModel"
        assert alone.settings([1], guidance_scale=10.0).guidance_scale == 10.0
        with pytest.raises(SettingError, match="from 0 to 10"):  # past what it was taught: refused, not extrapolated
            alone.settings([1], guidance_scale=10.5)
    finally:
        shared.denoiser.close()


def test_a_students_guidance_inputs_turn_each_scale_into_the_input_measured_to_act_as_it(tmp_path):
    path, student = tmp_path / "student.safetensors", UNet(dataclasses.replace(TINY_UNET, guidance_input=10.0))
    inputs = ((1.0, 1.0), (2.0, 4.0), (3.0, 10.0))  # as if scale 2 were what input 4 acts as, 3 input 10
    save_weights(path, student, ScheduleConfig(num_timesteps=100),
                 SamplingConfig(sampler="ddim", steps=4, guidance_scale=2.0, guidance_inputs=inputs), {"steps": 0})
    pipe = Pipeline.load(path, device="cpu")
    assert pipe.sampling_config.guidance_inputs == inputs
    assert [pipe.input_for(w) for w in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)] == [0.0, 0.5, 1.0, 2.5, 4.0, 7.0, 10.0]
    assert pipe.max_guidance_scale == 3.0
    with pytest.raises(SettingError, match="from 0 to 3"):  # past what its largest input acts as: refused
        pipe.settings([1], guidance_scale=3.5)
    pipe.denoiser = echo = ScaleEcho()  # records the scales the student is told
    x, labels = torch.zeros(2, 1, 28, 28), torch.tensor([1, 2])
    for asked, told in ((2.5, 7.0), (0.5, 0.5)):
        pipe.guided(labels, pipe.settings([1, 2], guidance_scale=asked, guidance_interval=(0, 99)))(x, 50)
        assert echo.calls[-1] == [told, told], f"scale {asked} is told as {told}"


@pytest.mark.parametrize("config, student, message", [
    (SamplingConfig(guidance_inputs=((1.0, 1.0), (2.0, 4.0))), False, "must be a student's pairs"),
    (SamplingConfig(guidance_inputs=((1.0, 1.0), (2.0, 4.0), (1.5, 5.0))), True, "rising from (1, 1)"),
    (SamplingConfig(guidance_inputs=((0.5, 1.0), (2.0, 4.0))), True, "rising from (1, 1)"),
    (SamplingConfig(guidance_scale=2.5, guidance_inputs=((1.0, 1.0), (2.0, 4.0))), True,
     "the recommended guidance 2.5 is more than the student follows (at most 2)"),
])
def test_guidance_inputs_that_cannot_be_used_are_refused(config, student, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config.check(100, student)


@torch.no_grad()
def test_the_slider_means_the_same_with_the_shipped_student_as_with_its_teacher(shipped_pipeline):
    """The student is told the input measured to act as the scale asked for (tune.py --teacher, on
    seed 0's images): on other images (seed 1), its prediction at each scale placed on the teacher's
    guidance line eps_u + s (eps_c - eps_u) lands, in the median, at about that scale."""
    student = Pipeline.load(STUDENT_WEIGHTS, device="cpu")
    scales = [1.5, 2.5, 3.5]
    acted = scales_acted(student, shipped_pipeline, [student.input_for(w) for w in scales] + scales, per_digit=2, seed=1)
    told, told_as_is = acted[:3], acted[3:]
    assert all(abs(s - w) <= 0.25 for s, w in zip(told, scales)), f"scales {scales} act as {told}"
    assert all(s < w - 0.5 for s, w in zip(told_as_is[1:], scales[1:])), f"told as they are, they act as {told_as_is}"


def test_tune_measures_a_students_scales_and_stores_its_inputs(tmp_path):
    copy = tmp_path / "student.safetensors"
    shutil.copy(STUDENT_WEIGHTS, copy)
    result = run_here("-m", "diffusion.tune", "--weights", str(copy), "--teacher", "weights/mnist-diffusion.safetensors",
                      "--per-digit", "1", "--write")
    assert result.returncode == 0, result.stderr
    tuned = Pipeline.load(copy, device="cpu")
    pairs = tuned.sampling_config.guidance_inputs
    assert pairs[0] == (1.0, 1.0) and len(pairs) >= 6, pairs
    assert f"scale <- the student's input: 1 <- 1, {pairs[1][0]:g} <- {pairs[1][1]:g}, " in result.stdout
    assert all(scale < given for scale, given in pairs[2:]), "the shipped student acts weaker than it is told"
    assert tuned.metadata["guidance_fit"]["images"] == 10


def test_tune_writes_no_inputs_that_fall_short_of_the_students_recommended_guidance(tmp_path):
    tensors, metadata = load_safetensors(STUDENT_WEIGHTS)
    metadata["sampling_config"] |= {"guidance_scale": 9.5, "guidance_inputs": None}  # more than it acts as
    copy = tmp_path / "student.safetensors"
    save_safetensors(copy, tensors, metadata)
    before = copy.read_bytes()
    result = run_here("-m", "diffusion.tune", "--weights", str(copy), "--teacher", "weights/mnist-diffusion.safetensors",
                      "--per-digit", "1", "--write")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--teacher: not written, the recommended guidance 9.5 is more than the student follows" in result.stderr
    assert copy.read_bytes() == before


def test_a_walk_between_digits_with_the_shipped_student_ends_at_its_own_digits():
    """The morph guides towards two classes at once: with a student, one evaluation per class."""
    student = Pipeline.load(STUDENT_WEIGHTS, device="cpu")
    frames = morph(student, *morph_ends(student, (3, 0), (8, 0)), frame_points(5))
    assert torch.equal(frames[0], student.generate(student.settings([3], seed=0))[0])
    assert torch.equal(frames[-1], student.generate(student.settings([8], seed=0))[0])
    read = class_probabilities(load_classifier(), frames).argmax(1).tolist()
    assert (read[0], read[-1]) == (3, 8), f"3 to 8 read as {read}"
