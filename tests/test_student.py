"""Guidance distilled into a student (train.py --distill-from): a UNet that takes the guidance
scale as an input, and the loss that teaches it the teacher's guided prediction."""

import dataclasses

import pytest
import torch

from diffusion import Pipeline, SamplingConfig
from diffusion.pipeline import save_weights
from diffusion.schedule import NoiseSchedule, ScheduleConfig, distillation_loss
from diffusion.unet import UNet

from .conftest import TINY_UNET, run_script

NULL = TINY_UNET.null_label


def test_a_new_student_predicts_as_its_teacher_conditionally_at_any_scale():
    torch.manual_seed(0)
    teacher = UNet(TINY_UNET).eval()
    student = UNet(dataclasses.replace(TINY_UNET, guidance_input=True)).eval()
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
    result = run_script("train.py", "--distill-from", str(teacher_path), "--data-dir", mnist_root, "--subset", "64",
                        "--batch-size", "32", "--max-steps", "2", "--run-dir", str(tmp_path / "run"),
                        "--out", str(tmp_path / "student.safetensors"))
    assert result.returncode == 0, result.stderr
    student = Pipeline.load(tmp_path / "student.safetensors", device="cpu")
    assert student.model.config == dataclasses.replace(TINY_UNET, guidance_input=True)
    assert student.schedule.config.num_timesteps == 100 and student.sampling_config == recommended
    assert student.metadata["training"]["args"]["distill_from"] == str(teacher_path)
