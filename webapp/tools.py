"""What an AI assistant can call: the demo's four operations as API endpoints with plain, typed
parameters and pictures for results. With `python app.py --mcp`, Gradio's MCP server offers each
as a tool named after its method and described by its docstring (its Args: name the parameters),
and only these: the page's own endpoints return the page's HTML."""

import base64
import binascii
import random

import gradio as gr
import jsonschema  # what the MCP SDK checks arguments with (gradio[mcp] installs it)
from gradio import FileData
from mcp import types as mcp_types

from diffusion import edit, media, morph
from diffusion.classifier import class_probabilities
from diffusion.settings import MAX_SEED, is_integer

from .editing import AS_READ, Editing, last
from .morph import MORPH_FRAMES, file_stem
from .shared import LIMITS, ROW_SIZE, Context, Refusal, errors_shown_on_the_page, log

TOOLS = ["generate_digit", "morph_digits", "finish_drawing", "repair_digit"]


class Tools:
    """The tools' handlers. Each validates its values the way the page and the API do (the
    library's checks, with the same messages) and returns (PNG, GIF, details)."""

    def __init__(self, context: Context, editing: Editing):
        self.context = context
        self.editing = editing

    def generate_digit(self, digit: int, guidance_scale: float | None = None,
                       seed: int | None = None) -> tuple[FileData, FileData, dict]:
        """Draw a handwritten digit (MNIST style, white on black) with a diffusion model, from pure noise.

        Args:
            digit: the digit to draw, from 0 to 9.
            guidance_scale: how hard to push towards the digit, from 0 to 10: 0 ignores it, 1 is plain conditional, about 2.5 (the default, when None) gives the crispest digits.
            seed: a whole number from 0 that fixes the noise, so the same seed gives the same picture; None picks one.
        Returns:
            The digit as a PNG, the denoising from noise to digit as an animated GIF, and details: the settings used and what a classifier reads the picture as.
        """
        pipe = self.context.pipe
        check_whole_number("digit", digit, 9)
        seed = random.randrange(2**32) if seed is None else seed
        scale = pipe.sampling_config.guidance_scale if guidance_scale is None else guidance_scale
        with errors_shown_on_the_page():
            settings = pipe.settings([digit], seed, scale, limits=LIMITS)
            frames = []
            for step, step_frames in media.denoising_animation(pipe.sample_steps(settings)):
                frames += step_frames
        gif, png = self.context.save_downloads(settings.file_stem, frames, media.to_uint8(step.x)[0])
        return file(png), file(gif), {"digit": digit, "guidance_scale": scale, "seed": seed} | self.read(step.x)

    def morph_digits(self, start_digit: int, end_digit: int, start_seed: int = 0,
                     end_seed: int = 1) -> tuple[FileData, FileData, dict]:
        """Walk smoothly from one generated digit to another, through the model's noise, in 9 frames.

        Args:
            start_digit: the digit to start from, 0 to 9.
            end_digit: the digit to end at, 0 to 9 (the same digit with another seed morphs between two styles).
            start_seed: the start digit's seed, a whole number from 0.
            end_seed: the end digit's seed, a whole number from 0.
        Returns:
            The 9 frames in a row as a PNG (start on the left), the morph there and back as an animated GIF, and details: what a classifier reads each frame as.
        """
        pipe = self.context.pipe
        for name, value, largest in (("start_digit", start_digit, 9), ("end_digit", end_digit, 9),
                                     ("start_seed", start_seed, MAX_SEED), ("end_seed", end_seed, MAX_SEED)):
            check_whole_number(name, value, largest)
        with errors_shown_on_the_page():
            start, end = morph.morph_ends(pipe, (start_digit, start_seed), (end_digit, end_seed))
            images = morph.morph(pipe, start, end, morph.frame_points(MORPH_FRAMES))
        frames = media.to_uint8(images)
        row = media.grid(frames, columns=MORPH_FRAMES)
        gif, png = self.context.save_downloads(file_stem(start, end, MORPH_FRAMES), media.back_and_forth(list(frames)),
                                               row, morph.FPS, png_size=ROW_SIZE)
        return file(png), file(gif), {"frames_read_as": morph.reading(class_probabilities(self.context.classifier, images))}

    def finish_drawing(self, picture: FileData, digit: int | None = None, strength: float = edit.DEFAULT_STRENGTH,
                       seed: int = 0) -> tuple[FileData, FileData, dict]:
        """Finish or tidy a picture of a handwritten digit (a sketch, a photo, a scan): the model noises it partly and denoises it into a clean MNIST-style digit.

        Args:
            picture: the picture: PNG, JPEG, ..., any size, dark ink on light paper or light on dark.
            digit: the digit to make of it, 0 to 9; None makes the digit it already looks like.
            strength: how much to change, above 0 and at most 1: low tidies the strokes, 1 takes the picture as a loose hint.
            seed: a whole number from 0 that fixes the noise added.
        Returns:
            The finished digit as a PNG, its denoising as an animated GIF, and details: the digit made, the digit the picture was read as, and the result's class probabilities.
        """
        image = self.context.uploaded_picture(picture, "picture")
        *_, gif, png, details = last(self.editing.run_edit(image, None, edit_digit(digit), strength, seed))
        return file(png), file(gif), details

    def repair_digit(self, picture: FileData, mask: FileData, digit: int | None = None,
                     seed: int = 0) -> tuple[FileData, FileData, dict]:
        """Repair part of a picture of a handwritten digit: the model fills in the masked part so that it fits the rest.

        Args:
            picture: the picture of a digit: PNG, JPEG, ..., any size.
            mask: a picture of the same shape, white (or opaque, on a transparent one) where to fill in; the rest is kept.
            digit: the digit to make of it, 0 to 9; None makes the digit the picture already looks like.
            seed: a whole number from 0 that fixes the noise.
        Returns:
            The repaired digit as a PNG, its denoising as an animated GIF, and details as finish_drawing gives.
        """
        image, painted = self.context.uploaded_picture(picture, "picture"), self.context.uploaded_picture(mask, "mask")
        *_, gif, png, details = last(self.editing.run_edit(image, painted, edit_digit(digit), 1.0, seed))
        return file(png), file(gif), details

    def read(self, images) -> dict:
        """What the classifier reads the first image as, and how sure it is."""
        probabilities = class_probabilities(self.context.classifier, images)[0]
        return {"read_as": int(probabilities.argmax()), "probability": round(float(probabilities.max()), 4)}


def file(path: str) -> dict:
    """A file the endpoint made, as Gradio's file data: a client downloads it, an assistant sees the picture."""
    return FileData(path=path).model_dump()


def edit_digit(digit: int | None) -> str:
    """An API caller's digit as the edit's choice: None takes the digit the picture reads as."""
    if digit is None:
        return AS_READ
    check_whole_number("digit", digit, 9)
    return str(digit)


def check_whole_number(name: str, value, largest: int) -> None:
    """A Refusal naming the parameter, unless value is a whole number from 0 to largest."""
    if not (is_integer(value) and 0 <= value <= largest):
        raise Refusal(f"{name} must be a whole number from 0 to {largest:,}, not {value!r}")


def register(context: Context, editing: Editing) -> None:
    """The tools as API endpoints named after them."""
    tools = Tools(context, editing)
    for name in TOOLS:
        # Not queued: Gradio's MCP server hands a queued endpoint's several results to the
        # assistant as one line of text (gradio 6.31, GradioMCPServer._execute_tool_without_progress).
        gr.api(getattr(tools, name), api_name=name, queue=False)


def offer_only_the_tools(app: gr.Blocks) -> None:
    """Once launched with its MCP server: Gradio offers every endpoint of the API as a tool, and
    the page's own return the page's HTML; an assistant is offered these four, and a wrong argument
    is answered by a sentence that names it."""
    server = app.mcp_server_obj
    server.tool_to_endpoint = {name: endpoint for name, endpoint in server.tool_to_endpoint.items() if name in TOOLS}
    handlers = server.mcp_server.request_handlers
    call_tool = handlers[mcp_types.CallToolRequest]

    async def call_with_arguments_checked(request: mcp_types.CallToolRequest):
        name, arguments = request.params.name, request.params.arguments or {}
        problem = argument_problem(server.get_input_schema(name)[0], arguments) if name in TOOLS else None
        if problem is None:
            return await call_tool(request)
        log.info("refused: %s", problem)
        return mcp_types.ServerResult(mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=problem)], isError=True))

    # The MCP SDK checks the arguments against the tools' schemas too, but its message names neither
    # the parameter nor what it takes ("'abc' is not valid under any of the given schemas").
    handlers[mcp_types.CallToolRequest] = call_with_arguments_checked


def argument_problem(schema: dict, arguments: dict) -> str | None:
    """What is wrong with a tool's arguments, naming the parameter and what it takes; None if nothing."""
    properties = schema.get("properties", {})
    for name, value in arguments.items():
        if name not in properties:
            return f"{name} is not a parameter of this tool; it takes {', '.join(properties)}"
        if isinstance(value, str) and "File Input" in properties[name].get("format", ""):
            if not value.startswith(("data:", "http://", "https://")):
                return (f"{name} must be a picture given as a data: URL (data:image/png;base64,...) or an http(s) "
                        "URL the server can reach: the server cannot read a file on your own computer")
            if value.startswith("data:") and not decodes(value):
                return f"{name}: the data: URL's base64 cannot be decoded (data:image/png;base64,...)"
        elif not jsonschema.Draft202012Validator(properties[name]).is_valid(value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return f"{name} must be {kind_of(properties[name])}, not {shown}"
    missing = [name for name in schema.get("required", []) if name not in arguments]
    return f"{' and '.join(missing)} must be given" if missing else None


def decodes(data_url: str) -> bool:
    """Whether a data: URL's base64 part decodes."""
    try:
        base64.b64decode(data_url.partition(",")[2], validate=True)
        return True
    except binascii.Error:
        return False


JSON_KINDS = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "true or false",
              "null": "null (left out)", "object": "an object", "array": "a list"}


def kind_of(schema: dict) -> str:
    """What a JSON schema allows, in words: "a whole number or null (left out)"."""
    options = schema.get("oneOf") or schema.get("anyOf")
    if options:
        return " or ".join(kind_of(option) for option in sorted(options, key=lambda option: option.get("type") == "null"))
    if "File Input" in schema.get("format", ""):
        return "a picture given as a data: or http(s) URL"
    return JSON_KINDS.get(schema.get("type"), "a value of its kind")
