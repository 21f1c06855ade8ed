"""Every refusal is a sentence: bad values through the API, the page's own events and the MCP tools,
as a careless or hostile client sends them, each answered by a message that names the value and
what is allowed, with nothing of the server's insides; the server logs each in one line, and keeps
tracebacks for its own faults. `python -m tests.test_refusals URL` prints the table of them all
against a running app."""

import asyncio
import json
import re
import sys
import uuid

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from .test_edit import three_drawn_in_a_corner

FILE = {"_type": "gradio.FileData"}
# Where: "api" (an endpoint of the API), "page" (the page's own events, by their handler's name) or
# "mcp" (a tool, through the MCP SDK as an assistant calls it); the values; what the answer says.
PICTURE = "the uploaded picture"  # stands for a good upload's file data, made by the test
BAD_REQUESTS = [
    ("api", "write_like", [None, "12", None], "picture: expected an uploaded picture (a PNG or JPEG file), not nothing"),
    ("api", "write_like", ["three.png", "12", None], "picture: expected an uploaded picture (a PNG or JPEG file), not text"),
    ("api", "write_like", [{}, "12", None], "picture: expected an uploaded picture (a PNG or JPEG file), not nothing"),
    ("api", "write_like", [{"url": "x"}, "12", None], "not an object without a file's path"),
    ("api", "write_like", [{"path": "/etc/passwd"}, "12", None], "picture: the picture must be uploaded to this app first"),
    ("api", "write_like", [{"path": "/etc/passwd", "meta": FILE}, "12", None], "was not uploaded to this app"),
    ("api", "write_like", [PICTURE], "expected 3 values (picture, number, drawn_digit), not 1"),
    ("api", "write_like", [PICTURE, "12a", None], "a number may hold only the digits 0 to 9 and spaces"),
    ("api", "write_like", [PICTURE, None, None], "type a number to write: 1 to 12 digits"),
    ("api", "write_like", [PICTURE, "12", 12], "drawn_digit must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, not '12'"),
    ("api", "repair_digit", [None, None, None, 0], "picture: expected an uploaded picture"),
    ("api", "repair_digit", [PICTURE, 7, None, 0], "mask: expected an uploaded picture (a PNG or JPEG file), not a number"),
    ("api", "repair_digit", [PICTURE, PICTURE, None, "abc"], "seed must be an integer from 0"),
    ("api", "finish_drawing", [PICTURE, None, "strong", 0], "strength must be a number above 0 and at most 1"),
    ("api", "finish_drawing", [PICTURE, None, 0.7, -3], "seed must be an integer from 0"),
    ("api", "finish_drawing", [[PICTURE], None, 0.7, 0], "picture: expected an uploaded picture (a PNG or JPEG file), not a list"),
    ("api", "finish_drawing", [], "expected 4 values (picture, digit, strength, seed), not 0"),
    ("api", "write", ["", 0], "type a number to write"),
    ("api", "write", ["2026", "abc"], "seed must be an integer from 0"),
    ("api", "morph", ["3", 0, "3", 0, 9], "end must be a different digit or seed from the start"),
    ("api", "forward_process", ["3", 5000, 0], "timestep must be an integer from 0 to 999, not 5000"),
    ("api", "generate", ["3", 2.5, "dpmpp"], "expected 6 values"),
    ("page", "draw_on_canvas", ["a drawing", "3", 0.7, 0], "Your drawing: expected a drawing (the canvas's value), not text"),
    ("page", "draw_on_canvas", [{"composite": 5}, "3", 0.7, 0], "Your drawing: expected a drawing (the canvas's value)"),
    ("page", "draw_on_canvas", [{"background": None, "layers": [], "composite": None}, "3", 0.7, 0],
     "the canvas is empty: draw a digit first"),
    ("page", "draw_on_canvas", [None, "3"], "expected 4 values (Your drawing, Digit to make, Strength, Seed), not 2"),
    ("page", "repair_in_editor", [[1, 2], "top half", "3", 0], "Paint over the part to fill in: expected a picture in the editor"),
    ("page", "repair_in_editor", [{"background": None, "layers": [], "composite": None}, "top half", "3", 0],
     "there is no picture to repair"),
    ("page", "repair_in_editor", [{"background": PICTURE, "layers": [], "composite": None}, "middle", "3", 0],
     "the part to fill in must be one of top half, bottom half, left half, right half, not 'middle'"),
    ("page", "repair_from_file", [{"path": "/etc/hostname", "meta": FILE}], "was not uploaded to this app"),
    ("page", "repair_from_file", ["/etc/hostname"], "Final image (PNG): expected a file uploaded to this app, not text"),
    ("page", "write_yours", [{"composite": "x"}, "the one it looks like", "12"], "Your digit: expected a drawing"),
    ("mcp", "generate_digit", {"digit": 7, "seed": "abc"}, "seed must be a whole number or null (left out), not 'abc'"),
    ("mcp", "generate_digit", {"digit": 11}, "digit must be a whole number from 0 to 9, not 11"),
    ("mcp", "generate_digit", {"digit": "7"}, "digit must be a whole number, not '7'"),
    ("mcp", "generate_digit", {"seed": 1}, "digit must be given"),
    ("mcp", "generate_digit", {"digit": 7, "colour": "red"}, "colour is not a parameter of this tool; it takes digit"),
    ("mcp", "generate_digit", {"digit": 7, "guidance_scale": -1}, "guidance_scale must be a number from 0 to 10, not -1"),
    ("mcp", "morph_digits", {"start_digit": 1, "end_digit": 12}, "end_digit must be a whole number from 0 to 9, not 12"),
    ("mcp", "morph_digits", {"start_digit": 1, "end_digit": 2, "start_seed": -1}, "start_seed must be a whole number"),
    ("mcp", "finish_drawing", {"picture": "/home/me/three.png"}, "picture must be a picture given as a data: URL"),
    ("mcp", "finish_drawing", {"picture": "data:image/png;base64,@@@"}, "picture: the data: URL's base64 cannot be decoded"),
    ("mcp", "finish_drawing", {"picture": "data:image/png;base64,aGVsbG8="}, "picture: the file is not a picture this app can read"),
    ("mcp", "repair_digit", {"picture": "data:image/png;base64,aGVsbG8="}, "mask must be given"),
]
INSIDES = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|/tmp/|/root/|/home/(?!me/)|\.py\b|gradio\.")


def upload(http: httpx.Client, name: str, image: Image.Image, folder) -> dict:
    """A picture uploaded as the API's clients upload one: its file data."""
    path = folder / name
    image.save(path)
    with open(path, "rb") as f:
        server_path = http.post("gradio_api/upload", files={"files": (name, f, "image/png")}).json()[0]
    return {"path": server_path, "meta": FILE}


def answer(http: httpx.Client, name: str, data: list) -> str:
    """The message an endpoint or page event (by its handler's name) answers these values with, as
    the page and the API clients send them (POST /gradio_api/queue/join, then the queue's events);
    "served" if it served them."""
    config = http.get("config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == name)
    session = uuid.uuid4().hex
    http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                             "event_data": None, "trigger_id": None}).raise_for_status()
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                return "served" if message["success"] else message["output"]["error"]
    return "no answer"


async def mcp_answers(url: str, calls: list[tuple[str, dict]]) -> list[str]:
    """Each tool call's text, from one MCP session, as an assistant makes them."""
    async with streamable_http_client(url + "gradio_api/mcp/") as (reader, writer, _):
        async with ClientSession(reader, writer) as session:
            await session.initialize()
            await session.list_tools()
            results = [await session.call_tool(name, arguments) for name, arguments in calls]
    return [result.content[0].text if result.isError else "served" for result in results]


def answers(url: str, folder) -> list[tuple[str, str, object, str, str]]:
    """(where, name, values, expected, answered) for each of BAD_REQUESTS, sent to the app at url."""
    with httpx.Client(base_url=url, timeout=120) as http:
        picture = upload(http, "three.png", three_drawn_in_a_corner(), folder)
        rows = []
        for where, name, values, expected in BAD_REQUESTS:
            if where == "mcp":
                continue
            data = [picture if value == PICTURE else value for value in values]
            for value in data:
                if isinstance(value, dict) and value.get("background") == PICTURE:
                    value["background"] = picture
            rows.append((where, name, values, expected, answer(http, name, data)))
    calls = [(name, values) for where, name, values, _ in BAD_REQUESTS if where == "mcp"]
    mcp = iter(asyncio.run(mcp_answers(url, calls)))
    return rows + [(where, name, values, expected, next(mcp))
                   for where, name, values, expected in BAD_REQUESTS if where == "mcp"]


def test_every_bad_value_gets_a_sentence_and_one_line_in_the_log(served_app, served_app_log, tmp_path):
    logged_before = served_app_log.read_text().count("refused: ")
    unclear = [(where, name, values, answered) for where, name, values, expected, answered in answers(served_app, tmp_path)
               if not (isinstance(answered, str) and expected in answered) or INSIDES.search(answered)]
    assert not unclear, "\n".join(map(repr, unclear))
    log = served_app_log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("refused: ") - logged_before >= len(BAD_REQUESTS), "each refusal, a line in the log"
    with httpx.Client(base_url=served_app, timeout=120) as http:
        assert answer(http, "write", ["12", 0]) == "served", "the next request is served"


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        print("| where | endpoint or tool | values | answer |\n| --- | --- | --- | --- |")
        for where, name, values, _, answered in answers(sys.argv[1], Path(folder)):
            print(f"| {where} | {name} | `{json.dumps(values)[:70]}` | {answered} |")
