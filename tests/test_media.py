import base64

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from diffusion import SAMPLERS, NoiseSchedule
from diffusion.media import (
    animation_samples,
    crisp_scale,
    denoising_frames,
    grid,
    png_data_url,
    sample_grid,
    save_gif,
    save_png,
    to_uint8,
    upscale,
)
from diffusion.samplers import Steps, ddim_path


def test_to_uint8_maps_the_model_range_to_bytes():
    images = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(4, 1, 1, 1)
    assert to_uint8(images).ravel().tolist() == [0, 128, 255, 255]
    assert to_uint8(torch.zeros(5, 1, 28, 28)).shape == (5, 28, 28)


def test_grid_and_upscale():
    images = np.arange(6, dtype=np.uint8).repeat(4).reshape(6, 2, 2)
    tiled = grid(images, columns=3, padding=1)
    assert tiled.shape == (2 * 3 + 1, 3 * 3 + 1)
    assert tiled[1, 1] == 0 and tiled[1, 4] == 1 and tiled[4, 7] == 5 and tiled[0, 0] == 0
    big = upscale(np.array([[0, 255]], np.uint8), 3)
    assert big.shape == (3, 6) and set(big[:, :3].ravel()) == {0} and set(big[:, 3:].ravel()) == {255}


def test_gif_loops_and_holds_its_final_frame(tmp_path):
    frames = list(np.random.default_rng(0).integers(0, 256, (3, 8, 9), dtype=np.uint8))
    path = tmp_path / "a.gif"
    save_gif(frames, path, fps=20, hold_final_s=1.0)
    np.testing.assert_array_equal(iio.imread(path, index=None), np.stack(frames))  # every grey level exact
    with Image.open(path) as gif:
        assert gif.info.get("loop") == 0
        gif.seek(2)
        assert gif.info["duration"] == 1000
        gif.seek(0)
        assert gif.info["duration"] == 50
    with pytest.raises(ValueError):
        save_gif([], tmp_path / "b.gif")


def test_png_round_trip(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    save_png(image, tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind


def test_sample_grid_puts_each_digit_in_a_column():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1)  # digits 0, 1, 2 with 2 samples each, digit-major
    tiled = sample_grid(images, num_digits=3)
    assert tiled.shape == (2 * 3 + 2, 3 * 3 + 2)
    assert [tiled[2, 2], tiled[2, 5], tiled[2, 8], tiled[5, 2]] == [0, 2, 4, 1]  # row 0: sample 0 of each digit
    assert sample_grid(images, num_digits=1).shape == (1 * 3 + 2, 6 * 3 + 2)  # one digit: its samples in a row


def test_denoising_frames_show_each_x_t_above_the_steps_x0():
    samples = [torch.full((1, 1, 28, 28), -1.0), torch.zeros(1, 1, 28, 28)]
    frames = denoising_frames(samples, torch.ones(1, 1, 28, 28), num_digits=1)
    assert [frame.shape for frame in frames] == [(32 + 4 + 32, 32)] * 2
    assert frames[0][2:30, 2:30].max() == 0 and set(frames[1][2:30, 2:30].ravel()) == {128}  # x_t: black, grey
    for frame in frames:
        assert set(frame[32:36].ravel()) == {128}  # the grey bar
        assert frame[38:66, 2:30].min() == 255  # x0: white


def test_png_data_url_decodes_to_the_image():
    image = np.random.default_rng(1).integers(0, 256, (5, 7), dtype=np.uint8)
    url = png_data_url(image)
    assert url.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(iio.imread(base64.b64decode(url.split(",", 1)[1])), image)


def test_crisp_scale_is_a_whole_factor_of_at_least_two():
    assert crisp_scale((32, 32), target=320) == 10
    assert crisp_scale((68, 32), target=480) == 7  # the longer side counts
    assert crisp_scale((32, 302), target=320) == 2


def oracle_steps(sampler: str, steps: int):
    """A sampler's steps with a perfect model of a two-image data set, and that data set."""
    schedule = NoiseSchedule()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((2, 1, 28, 28), generator=generator) * 2 - 1
    x_T = torch.randn(image.shape, generator=generator)
    def eps_fn(x, t):
        alpha_bar = schedule.alphas_cumprod[t]
        return (x - alpha_bar.sqrt() * image) / (1 - alpha_bar).sqrt()
    return SAMPLERS[sampler](eps_fn, x_T, schedule, schedule.timesteps(steps), generator), x_T, image


def test_ddim_path_runs_from_the_steps_input_to_its_ddim_result():
    steps = list(oracle_steps("ddim", 5)[0])
    for step in steps:
        assert torch.allclose(ddim_path(step, step.alpha_bar), step.x_t, atol=1e-4)
        assert torch.allclose(ddim_path(step, step.alpha_bar_next), step.x, atol=1e-4)


@pytest.mark.parametrize(("sampler", "steps", "frames"), [("dpmpp", 6, 1 + 6 * 8), ("dpmpp", 1, 1 + 48), ("ddim", 50, 51),
                                                           ("ddpm", 1000, 101)])
def test_the_animation_starts_at_the_noise_ends_at_the_image_and_fills_short_runs(sampler, steps, frames):
    trajectory, x_T, _ = oracle_steps(sampler, steps)
    pairs = list(animation_samples(Steps(trajectory, steps)))
    assert [step.index for step, _ in pairs] == list(range(steps)), "one entry per step, as the steps come"
    samples = [x for _, xs in pairs for x in xs]
    assert len(samples) == frames
    assert torch.equal(samples[0], x_T) and torch.equal(samples[-1], pairs[-1][0].x)
    # Frames between steps move steadily from noise towards the image: no frame repeats.
    assert len({x.numpy().tobytes() for x in samples}) == len(samples)
