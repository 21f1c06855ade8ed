import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.media import grid, save_gif, save_png, to_uint8, upscale


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
    frames = [np.full((8, 8), v, np.uint8) for v in (0, 100, 200)]
    path = tmp_path / "a.gif"
    save_gif(frames, path, fps=20, hold_final_s=1.0)
    decoded = iio.imread(path, index=None)
    assert decoded.shape == (3, 8, 8, 3)
    assert [int(frame.mean()) for frame in decoded] == [0, 100, 200]
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
