"""The demo as tools for AI assistants: `python app.py --mcp` offers the four tools over the Model
Context Protocol, and an MCP client (the `mcp` package, as an assistant uses it) lists them, calls
one and gets a picture it can show."""

import asyncio
import base64
import io

import numpy as np
import torch
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from diffusion import media, morph
from diffusion.classifier import class_probabilities, load_classifier
from webapp.morph import MORPH_FRAMES
from webapp.shared import ROW_SIZE
from webapp.tools import TOOLS


async def ask(url: str, calls: list[tuple[str, dict]]):
    """(the tools listed, each call's result), from one MCP session with the server at url."""
    async with streamable_http_client(url + "gradio_api/mcp/") as (reader, writer, _):
        async with ClientSession(reader, writer) as session:
            await session.initialize()
            listed = (await session.list_tools()).tools
            return listed, [await session.call_tool(name, arguments) for name, arguments in calls]


def pixels(picture) -> np.ndarray:
    """An image content's picture, as grey pixels."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(picture.data))).convert("L"))


def digit_read(png: bytes) -> int:
    """The digit the classifier reads a generated digit's PNG (enlarged whole pixels) as."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    scale = image.shape[0] // 28
    x = torch.from_numpy(image[::scale, ::scale].copy()).float().div(127.5).sub(1)[None, None]
    return int(class_probabilities(load_classifier(), x).argmax())


def test_an_assistant_lists_the_tools_and_gets_a_seven_it_can_show(served_app, shipped_pipeline):
    listed, (seven, again, other_seed, refused, morphed) = asyncio.run(ask(served_app, [
        ("generate_digit", {"digit": 7, "seed": 3}),
        ("generate_digit", {"digit": 7, "seed": 3}),
        ("generate_digit", {"digit": 7, "seed": 4}),
        ("generate_digit", {"digit": 7, "guidance_scale": 99}),
        ("morph_digits", {"start_digit": 1, "end_digit": 7})]))
    assert sorted(tool.name for tool in listed) == sorted(TOOLS), "the four tools, and not the page's own events"
    for tool in listed:
        assert len(tool.description) > 60, f"{tool.name} says what it does"
        for name, parameter in tool.inputSchema["properties"].items():
            assert parameter.get("description") and ("type" in parameter or "oneOf" in parameter), (tool.name, name)
    generate = next(tool for tool in listed if tool.name == "generate_digit")
    assert generate.inputSchema["properties"]["digit"]["type"] == "integer"

    assert not seven.isError, seven.content
    picture, *rest = seven.content
    assert (picture.type, picture.mimeType) == ("image", "image/png")
    assert digit_read(base64.b64decode(picture.data)) == 7, "the picture is a 7, as the classifier reads it"
    assert "'read_as': 7" in rest[-1].text and "'seed': 3" in rest[-1].text
    # The seed reported is the seed used: the library's picture for it, the same again, another for another seed.
    pipe = shipped_pipeline
    expected = media.enlarge(media.to_uint8(pipe.generate(pipe.settings([7], 3)))[0], media.ANIMATION_SIZE)
    np.testing.assert_array_equal(pixels(picture), expected, err_msg="not the library's 7 of seed 3")
    assert not again.isError and again.content[0].data == picture.data, "the same seed, the same PNG"
    assert not other_seed.isError and "'seed': 4" in other_seed.content[-1].text
    assert not np.array_equal(pixels(other_seed.content[0]), pixels(picture)), "another seed, another picture"

    assert refused.isError and "guidance_scale must be a number from 0 to 10, not 99" in refused.content[0].text
    assert not morphed.isError and morphed.content[0].type == "image", "a morph's frames in a row, as a picture"
    # The row is the library's morph (seeds 0 and 1 by default): frames with ink, each its own.
    row = pixels(morphed.content[0])
    start, end = morph.morph_ends(pipe, (1, 0), (7, 1))
    frames = media.to_uint8(morph.morph(pipe, start, end, morph.frame_points(MORPH_FRAMES)))
    np.testing.assert_array_equal(row, media.enlarge(media.grid(frames, columns=MORPH_FRAMES), ROW_SIZE),
                                  err_msg="not the library's morph from 1 to 7")
    assert all(frame.max() > 128 for frame in frames) and len({frame.tobytes() for frame in frames}) == MORPH_FRAMES
