import json
import math
import os

import pytest
import torch
from safetensors.torch import save_file

from diffusion import Pipeline, SamplingConfig, SettingError, UNetConfig, WeightsError, best_device, pick_device
from diffusion.measure import EvaluationCounter
from diffusion.settings import labels_of
from diffusion.classifier import load_classifier, predict
from diffusion.io import load_safetensors, save_safetensors
from diffusion.pipeline import save_weights

from .conftest import TINY_UNET


def test_weights_round_trip_with_metadata(tmp_path, tiny_pipeline):
    path = tmp_path / "w.safetensors"
    training = {"command": "python train.py --tiny", "steps": 3}
    save_weights(path, tiny_pipeline.model, tiny_pipeline.schedule.config, SamplingConfig(steps=4), training)
    loaded = Pipeline.load(path, device="cpu")
    assert loaded.model.config == TINY_UNET
    assert loaded.schedule.config == tiny_pipeline.schedule.config
    assert loaded.sampling_config == SamplingConfig(steps=4)
    assert loaded.metadata["training"] == training
    for name, tensor in tiny_pipeline.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert torch.allclose(loaded.generate(loaded.settings([1, 2], seed=5)), tiny_pipeline.generate(tiny_pipeline.settings([1, 2], seed=5)), atol=1e-5)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "readable as any file written by open() would be"


def test_a_guidance_interval_travels_with_the_weights_and_older_files_guide_everywhere(tmp_path, tiny_pipeline):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_pipeline.model, tiny_pipeline.schedule.config,
                 SamplingConfig(steps=4, guidance_scale=3.0, guidance_interval=(40, 70)), {})
    assert Pipeline.load(path, device="cpu").sampling_config.guidance_interval == (40, 70)  # a tuple again, from JSON
    tensors, metadata = load_safetensors(path)
    del metadata["sampling_config"]["guidance_interval"]  # as written before guidance intervals
    save_safetensors(path, tensors, metadata)
    assert Pipeline.load(path, device="cpu").sampling_config.guidance_interval is None


def test_the_recommended_guidance_interval_is_what_sample_steps_uses_unless_told(tiny_pipeline):
    pipe = Pipeline(tiny_pipeline.model, tiny_pipeline.schedule,
                    SamplingConfig(steps=4, guidance_scale=3.0, guidance_interval=(40, 70)))
    # Four steps at t = 99, 74, 49, 24: only 49 lies in 40-70, so one guided step of four.
    for interval, evaluations in [(None, 5), ((0, 99), 8), (pipe.all_timesteps, 8), ((80, 99), 5), ((0, 30), 5)]:
        with EvaluationCounter(pipe.model) as counter:
            images = pipe.generate(pipe.settings([1, 2], seed=3, guidance_interval=interval))
        assert counter.images == evaluations * len(images), interval
    assert torch.equal(pipe.generate(pipe.settings([1, 2], seed=3)), pipe.generate(pipe.settings([1, 2], seed=3, guidance_interval=(40, 70))))


def test_shipped_weights_carry_their_story(each_shipped_pipeline):
    training = each_shipped_pipeline.metadata["training"]
    assert training["command"].startswith("python train.py")
    assert training["wall_time_s"] > 0 and training["hardware"] and training["steps"] > 0
    assert each_shipped_pipeline.sampling_config.sampler in ("ddpm", "ddim", "dpmpp")


def test_shipped_weights_draw_the_digits_asked_for(each_shipped_pipeline):
    pipe = each_shipped_pipeline
    images = pipe.generate(pipe.settings(list(range(10)), samples_per_digit=3, seed=0))
    predicted, _ = predict(load_classifier(), images)
    labels = labels_of(range(10), 3)
    assert (predicted == labels).float().mean() >= 0.9, (predicted, labels)


def test_same_seed_same_images_other_seed_other_images(tiny_pipeline):
    a = tiny_pipeline.generate(tiny_pipeline.settings([3, 7], seed=1, samples_per_digit=2))
    assert a.shape == (4, 1, 28, 28)
    assert torch.equal(a, tiny_pipeline.generate(tiny_pipeline.settings([3, 7], seed=1, samples_per_digit=2)))
    assert not torch.equal(a, tiny_pipeline.generate(tiny_pipeline.settings([3, 7], seed=2, samples_per_digit=2)))


def test_sample_steps_streams_every_step(tiny_pipeline):
    steps = list(tiny_pipeline.sample_steps(tiny_pipeline.settings([4], steps=6, sampler="ddim")))
    assert len(steps) == 6 and steps[0].timestep == 99
    assert steps[0].x.is_inference() and torch.is_grad_enabled()  # inference mode inside, the caller's state kept
    assert torch.equal(steps[-1].x, tiny_pipeline.generate(tiny_pipeline.settings([4], steps=6, sampler="ddim")))


@pytest.mark.parametrize("options, message", [
    ({"digits": []}, "digits"), ({"digits": [10]}, "digits"), ({"digits": [-1]}, "digits"), ({"digits": ["3"]}, "digits"),
    ({"guidance_scale": math.nan}, "guidance_scale"), ({"guidance_scale": math.inf}, "guidance_scale"),
    ({"guidance_scale": -1}, "guidance_scale"), ({"guidance_scale": 1e9}, "guidance_scale"),
    ({"sampler": "euler"}, "sampler"), ({"steps": 0}, "steps"), ({"steps": 101}, "steps"), ({"steps": 2.5}, "steps"),
    ({"seed": -2}, "seed"), ({"seed": 2**70}, "seed"), ({"samples_per_digit": 0}, "samples_per_digit"),
    ({"guidance_interval": (70, 40)}, "guidance_interval"), ({"guidance_interval": (0, 100)}, "guidance_interval"),
    ({"guidance_interval": (-1, 50)}, "guidance_interval"), ({"guidance_interval": (1.5, 50)}, "guidance_interval"),
    ({"guidance_interval": (50,)}, "guidance_interval"), ({"guidance_interval": "all"}, "guidance_interval"),
])
def test_bad_requests_get_clear_errors_naming_the_setting(tiny_pipeline, options, message):
    options = {"digits": [1], **options}
    with pytest.raises(SettingError, match=f"^{message} must be ") as refused:
        tiny_pipeline.settings(options.pop("digits"), **options)
    assert refused.value.name == message  # so that a CLI can name its own flag


def test_a_device_this_machine_lacks_is_refused_before_any_work():
    assert pick_device(None) == best_device() and pick_device("cpu") == torch.device("cpu")
    lacking = f"cuda:{torch.cuda.device_count()}"  # one more than there are, if any
    for name in (lacking, "tpu", "gpu"):
        with pytest.raises(SettingError, match=f"device must be one this machine has \\(.*cpu\\), not '{name}'"):
            Pipeline.load(device=name)


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(WeightsError, match="no such file.*train.py"):
        Pipeline.load(tmp_path / "absent.safetensors")


def test_truncated_and_garbage_weights_are_refused(tmp_path, tiny_pipeline):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_pipeline.model, tiny_pipeline.schedule.config, SamplingConfig(), {})
    data = path.read_bytes()
    for name, content in [("truncated", data[:len(data) // 2]), ("garbage", b"not a weights file at all"), ("empty", b"")]:
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(WeightsError, match="truncated or corrupt"):
            Pipeline.load(bad)


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path, tiny_pipeline):
    path = tmp_path / "w.safetensors"
    # Metadata that claims a larger model than the tensors hold.
    save_weights(path, tiny_pipeline.model, tiny_pipeline.schedule.config, SamplingConfig(), {})
    tensors, metadata = {k: v.contiguous() for k, v in tiny_pipeline.model.state_dict().items()}, {}
    metadata = {"unet_config": json.dumps({**UNetConfig().__dict__, "channels": [16, 32]}),
                "schedule_config": json.dumps({}), "sampling_config": json.dumps({}), "training": json.dumps({})}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="do not fit the model"):
        Pipeline.load(path)
    # A safetensors file from elsewhere, without our metadata.
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError, match="metadata lacks unet_config"):
        Pipeline.load(path)
    # A configuration field this code does not know.
    metadata["unet_config"] = json.dumps({"image_size": 28, "wings": 2})
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="configuration does not fit"):
        Pipeline.load(path)


def test_the_untrained_model_is_told_apart_by_the_classifier(tiny_pipeline):
    """The classifier is a judge that can fail: noise from an untrained model is not read as the digits asked for."""
    images = tiny_pipeline.generate(tiny_pipeline.settings(list(range(10)), samples_per_digit=3, seed=0))
    predicted, _ = predict(load_classifier(), images)
    assert (predicted == labels_of(range(10), 3)).float().mean() < 0.5
