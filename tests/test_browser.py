"""A real browser uses the app as a person would: Debian's chromium, driven by Playwright, on a
desktop (1280x900) and on a phone (390x844).

It asserts what a person needs: the animation plays (its frames, read from the page's own
picture, and the picture changing on screen), nothing covers the live picture during a long run
(held at a known step by a gate on the model, so that Stop lands mid-run however fast the
machine), each digit is big enough to see,
the classifier's bars show and change during a run and its chart follows, the morph plays,
every tab can be reached, Stop says what it did, nothing needs sideways scrolling; a digit drawn
with the mouse (or a finger, on the phone) is finished and repaired. It saves a
screenshot before, during and after each run and of every tab, in the folder it prints
(BROWSER_SCREENSHOTS names one; by default a temporary folder), to be looked at.

Needs `apt-get install -y chromium` and `pip install playwright` (both done by .ci/run);
CHROMIUM names another Chromium binary; README_ASSETS a folder to keep the README's views of
the app in (app.png and app-phone.png: the default run playing, as the screen shows it;
app-draw.png: a drawing finished, on the desktop).
"""

import base64
import hashlib
import io
import math
import os
import re
from pathlib import Path

import pytest
from PIL import Image, ImageSequence

import webapp
from diffusion import Pipeline

from .conftest import VIEWPORTS, Gate, dark_share, free_port, wait_until

pytestmark = pytest.mark.slow  # needs Chromium: see docs/testing.md
README_VIEWS = {"desktop": "app.png", "phone": "app-phone.png"}
MIN_CELL_PX = {"desktop": 56, "phone": 28}  # a 28 px digit at least 2x on a desktop, 1x on a phone

# Where a person would look at the live picture: its centre and four inner points; what the
# browser finds on top at each (it must be the picture itself, not an overlay).
PICTURE_ON_TOP = """() => {
    const img = document.querySelector("#denoising img");
    const r = img.getBoundingClientRect();
    return [[0.5, 0.5], [0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]].map(([fx, fy]) =>
        document.elementFromPoint(r.left + fx * r.width, r.top + fy * r.height) === img);
}"""
# The first panel of what the classifier reads: its size, whether it is on screen and uncovered,
# where it is against the live picture, and its bars' heights (or its lines' count).
FIRST_READING = """() => {
    const svg = document.querySelector("#probabilities svg");
    const r = svg.getBoundingClientRect();
    const picture = document.querySelector("#denoising img").getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {width: r.width, onScreen: r.top >= 0 && r.bottom <= window.innerHeight,
            below: r.top >= picture.bottom, beside: r.left >= picture.right,
            uncovered: svg.contains(top), bars: [...svg.querySelectorAll("rect")].map(bar => bar.getAttribute("height")),
            lines: svg.querySelectorAll("polyline").length, marked: svg.querySelectorAll("circle").length};
}"""
MIN_READING_PX = {"desktop": 150, "phone": 150}  # a panel's width: its ten bars and their digits readable


def picture_gif(page, selector: str = "#denoising img") -> Image.Image:
    """The animation the page shows, decoded from the picture's own data URL."""
    src = page.locator(selector).first.get_attribute("src")
    assert src.startswith("data:image/gif;base64,"), "the finished run should show an animation (a GIF)"
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def distinct_frames(gif: Image.Image) -> int:
    return len({hashlib.sha1(frame.convert("RGB").tobytes()).digest() for frame in ImageSequence.Iterator(gif)})


def wait_until_it_plays(picture, what: str) -> None:
    """Wait until the picture on screen changes, as the browser paints it: it plays. (A canvas
    would not tell: it draws an animated image's first frame.)"""
    first = picture.screenshot(animations="allow")
    wait_until(lambda: picture.screenshot(animations="allow") != first, f"{what} playing on screen", timeout=60)


def cell_px(page) -> float:
    """On-screen size of one 28 px digit cell: the picture is sent at 1 px per pixel."""
    return page.evaluate("""() => { const img = document.querySelector("#denoising img");
        return 28 * img.getBoundingClientRect().width / img.naturalWidth; }""")


def no_sideways_scrolling(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def check(viewport: str, page, gate: Gate, pipe: Pipeline, shoot, report) -> None:
    """The whole visit, on one viewport."""
    from playwright.sync_api import expect
    status, picture = page.locator("#status"), page.locator("#denoising img")

    # Every tab has a visible label, and the page fits the screen.
    for tab in ("Generate", "How guidance works", "Morph", "Draw", "Repair", "Forward process"):
        assert page.get_by_role("tab", name=tab).is_visible(), f"the {tab!r} tab should be visible on the {viewport}"
    assert no_sideways_scrolling(page)
    shoot("1-generate-before")

    # The default run: when it ends, the page plays the whole process, looping.
    page.locator("#generate").click()
    expect(status).to_contain_text("made in")
    shoot("2-generate-default-after")
    gif = picture_gif(page)
    durations = [gif.seek(i) or gif.info["duration"] for i in range(gif.n_frames)]
    loop_s = sum(durations) / 1000
    frames = distinct_frames(gif)
    wait_until_it_plays(picture, "the default run's animation")
    shoot("3-generate-default-playing")
    report(f"default run: {gif.n_frames} frames ({frames} distinct), loop {loop_s:.2f} s; "
           f"digit cell {cell_px(page):.1f} px")
    assert frames >= 24 and loop_s >= 1.5, "a whole process to watch: at least 24 distinct frames over 1.5 s"
    # What the classifier read: a chart of ten lines, the pass of 50% marked. On a desktop, beside
    # the picture and on screen without scrolling; on a phone, below it, whole on screen once scrolled to.
    chart = page.evaluate(FIRST_READING)
    if viewport == "phone":
        assert chart["below"], "on a phone the chart comes below the picture"
        page.locator("#probabilities svg").first.scroll_into_view_if_needed()
        chart = page.evaluate(FIRST_READING)
    report(f"default run's chart: {chart['width']:.0f} px wide, {chart['lines']} lines, on screen {chart['onScreen']}")
    assert chart["lines"] == 10 and chart["marked"] == 1 and chart["uncovered"]
    assert chart["width"] >= MIN_READING_PX[viewport]
    assert chart["onScreen"], "the whole chart on screen at once"
    assert chart["beside"] or viewport == "phone", "on a desktop the chart is beside the picture"
    picture.scroll_into_view_if_needed()
    assert cell_px(page) >= MIN_CELL_PX[viewport]
    with page.expect_download() as download:
        page.locator("#gif a").first.click()
    downloaded = Image.open(download.value.path())
    recommended = pipe.sampling_config
    assert download.value.suggested_filename.startswith(
        f"mnist-digit-3_{recommended.sampler}-{recommended.steps}-steps_guidance-{recommended.guidance_scale:g}_seed-")
    assert downloaded.n_frames == gif.n_frames, "the GIF download is the animation the page plays"
    assert [downloaded.seek(i) or downloaded.info["duration"] for i in range(gif.n_frames)] == durations
    seed = status.inner_text().split("seed ")[1].split(" ")[0]
    assert seed.isdigit(), "the status names the seed that made the picture"

    # Untick Random seed: the box appears with the picture's seed, and Generate makes that picture again.
    expect(page.locator("#seed")).to_be_hidden()
    page.locator("#random-seed input").uncheck()
    expect(page.locator("#seed input")).to_have_value(seed)
    picture_src = picture.get_attribute("src")
    gate.hold()  # so that the page is seen waiting for this run, not still showing the last one's result
    page.locator("#generate").click()
    expect(status).to_contain_text("Waiting for the model")
    gate.open()
    expect(status).to_contain_text("made in")
    expect(status).to_contain_text(f"seed {seed} ")
    assert picture.get_attribute("src") == picture_src, "the same seed and settings make the same animation"
    shoot("3b-generate-same-seed-again")
    page.locator("#random-seed input").check()
    expect(page.locator("#seed")).to_be_hidden()

    # A long run of all ten, several per digit: the live picture is never covered, then Stop.
    page.locator("#digit").get_by_label("all ten", exact=True).check()
    page.locator("#sampler").get_by_label("DDIM", exact=True).check()
    expect(page.locator("#steps input[type=number]")).to_have_value("50")
    page.locator("#steps input[type=range]").fill("250")
    page.locator("#samples input[type=range]").fill("4")
    gate.hold()  # the run waits at its first forward pass until the gate lets it through
    page.locator("#generate").click()
    expect(status).to_contain_text("Waiting for the model")
    gate.allow(1)
    expect(status).to_contain_text("Step 1 of 250")
    expect(picture).to_have_attribute("src", re.compile("^data:image/png"))
    picture.scroll_into_view_if_needed()
    on_top = page.evaluate(PICTURE_ON_TOP)
    running_cell = cell_px(page)
    shoot("4-generate-long-during")
    report(f"long run (DDIM 250, all ten x4): picture on top at {sum(on_top)} of 5 points; digit cell "
           f"{running_cell:.1f} px; {status.inner_text()}")
    assert all(on_top), f"something covers the live picture: {on_top}"
    # The classifier's bars: ten panels of ten, visible, uncovered, and changing as the steps come.
    page.locator("#probabilities svg").first.scroll_into_view_if_needed()
    expect(page.locator("#probabilities svg")).to_have_count(10)
    bars = page.evaluate(FIRST_READING)
    assert len(bars["bars"]) == 10 and bars["uncovered"] and bars["width"] >= MIN_READING_PX[viewport]
    shoot("4b-generate-long-bars")
    changed = """(before) => { const svg = document.querySelector("#probabilities svg");
        const now = svg ? [...svg.querySelectorAll("rect")].map(bar => bar.getAttribute("height")) : [];
        return now.length == 10 && JSON.stringify(now) != JSON.stringify(before); }"""

    def a_step_later_the_bars_changed() -> bool:
        gate.allow(1)  # one step at a time, each shown: polled more slowly than the page's previews come
        return page.evaluate(changed, bars["bars"])

    wait_until(a_step_later_the_bars_changed, "the bars changing from step to step", poll_s=0.3)
    gate.hold()
    report(f"long run: the bars changed during the run, by {status.inner_text()}")
    picture.scroll_into_view_if_needed()
    assert running_cell >= MIN_CELL_PX[viewport]
    expect(page.locator("#stop")).to_be_enabled()
    page.locator("#stop").click()
    expect(page.locator("#stop")).to_be_disabled()  # the server has the Stop: the run ends after its step
    gate.open()
    expect(status).to_contain_text("Stopped at step")
    stopped = picture_gif(page)
    picture.scroll_into_view_if_needed()  # Stop's click brought Stop into view; on a phone the picture is below
    shoot("5-generate-stopped")
    report(f"stopped: {status.inner_text()!r}; partial animation {stopped.n_frames} frames")
    assert stopped.n_frames >= 2 and all(page.evaluate(PICTURE_ON_TOP))
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#generate")).to_be_enabled()
    shoot("5-generate-stopped-then-idle")
    assert no_sideways_scrolling(page)

    # How guidance works: one labelled row per scale, each whole row on screen, for one digit and all ten.
    page.get_by_role("tab", name="How guidance works").click()
    for choice in ("3", "all ten"):
        page.locator("#compare-digit").get_by_label(choice, exact=True).check()
        page.locator("#compare").click()
        rows = page.locator("#guidance-rows img")
        row_width = 10 * 30 + 2 if choice == "all ten" else 6 * 30 + 2  # ten digits, or six samples of one
        page.wait_for_function("""(width) => { const rows = document.querySelectorAll("#guidance-rows img");
            return rows.length == 6 && [...rows].every(row => row.complete && row.naturalWidth == width); }""",
                               arg=row_width, timeout=60_000)
        labels = page.locator("#guidance-rows figcaption").all_inner_texts()
        assert [label.split(" · ")[0] for label in labels] == [
            "guidance 0", "guidance 1", "guidance 1.5", "guidance 3", "guidance 5", "guidance 10"]
        assert all("read as asked" in label for label in labels)
        width = page.viewport_size["width"]
        boxes = [row.bounding_box() for row in rows.all()]
        assert all(box["x"] >= 0 and box["x"] + box["width"] <= width for box in boxes), "a row is cut off"
        assert no_sideways_scrolling(page)
        shoot(f"6-guidance-{choice.replace(' ', '-')}")

    # Morph: the row denoises, then the morph loops there and back, and a point can be picked.
    page.get_by_role("tab", name="Morph").click()
    shoot("8-morph-before")
    page.locator("#end-digit").get_by_label("8", exact=True).check()
    morph_status = page.locator("#morph-status")
    page.locator("#morph").click()
    expect(morph_status).to_contain_text("Step ")
    shoot("8-morph-during")
    expect(morph_status).to_contain_text("The classifier reads the frames as: 3")
    looping, row = page.locator("#morph-figures img").all()
    frames = distinct_frames(picture_gif(page, "#morph-figures img"))
    wait_until_it_plays(looping, "the morph")
    report(f"morph: a loop of {frames} distinct pictures; {morph_status.inner_text()}")
    assert frames >= 6, "the morph walks through at least 6 pictures"
    width = page.viewport_size["width"]
    for image in (looping, row):
        box = image.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["width"] >= 200
    shoot("8-morph-after")
    point = page.locator("#point-figures img")
    before = point.get_attribute("src")
    page.locator("#point input[type=number]").fill("0.9")
    page.locator("#point input[type=number]").press("Enter")
    page.locator("#point input[type=range]").dispatch_event("pointerup")
    page.wait_for_function("""(before) => { const img = document.querySelector("#point-figures img");
        return img && img.getAttribute("src") != before; }""", arg=before, timeout=60_000)
    expect(page.locator("#point-figures figcaption")).to_have_text("at 0.9 of the way")
    expect(page.locator("#point-readings svg rect")).to_have_count(10)
    assert no_sideways_scrolling(page)
    shoot("8-morph-point")

    page.get_by_role("tab", name="Forward process").click()
    expect(page.locator("#forward-details")).to_contain_text("alpha_bar =")
    expect(page.locator("#forward-figures img")).to_have_count(3)
    for image in page.locator("#forward-figures img").all():
        box = image.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    assert no_sideways_scrolling(page)
    shoot("7-forward-process")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_page_as_a_person_sees_it(browser, gated_app, shipped_pipeline, screenshots, viewport, capsys):
    url, gate = gated_app
    page = browser.new_page(viewport=VIEWPORTS[viewport])
    page.goto(url)
    page.locator("#generate").wait_for()

    def shoot(name: str) -> None:
        page.screenshot(path=screenshots / f"{viewport}-{name}.png", full_page=True)
        if name == "3-generate-default-playing" and os.environ.get("README_ASSETS"):
            page.screenshot(path=Path(os.environ["README_ASSETS"]) / README_VIEWS[viewport])

    def report(line: str) -> None:
        with capsys.disabled():
            print(f"\nbrowser ({viewport}): {line}", end="")

    try:
        check(viewport, page, gate, shipped_pipeline, shoot, report)
    finally:
        gate.open()  # whatever happened, the next test finds the model free
        shoot("last")
        page.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_full_app_says_busy_and_generate_works_again(browser, shipped_pipeline, screenshots, viewport):
    """With every place taken (here one running and one waiting), Generate is told the app is busy,
    and the page is ready to try again: not stuck waiting with Generate greyed out."""
    from gradio_client import Client
    from playwright.sync_api import expect

    blocks = webapp.build_app(shipped_pipeline, max_runs_at_once=1, max_queue_size=1)
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, **webapp.LAUNCH_OPTIONS)
    url = f"http://127.0.0.1:{port}/"
    jobs = [Client(url, verbose=False).submit("3", 1.5, "ddpm", 1000, seed, 1, api_name="/generate") for seed in (1, 2)]
    page = browser.new_page(viewport=VIEWPORTS[viewport])
    try:
        wait_until(lambda: jobs[1].status().code.name == "IN_QUEUE", "the second request taking the waiting place")
        page.goto(url)
        page.locator("#generate").click()
        expect(page.get_by_text("This application is currently busy")).to_be_visible()
        expect(page.locator("#status")).to_contain_text("Nothing was generated")
        expect(page.locator("#generate")).to_be_enabled()
        expect(page.locator("#stop")).to_be_disabled()
        page.screenshot(path=screenshots / f"{viewport}-8-app-full.png")
    finally:
        page.close()
        for job in jobs:
            job.cancel()
        blocks.close()


THREE = [(0.35 + 0.22 * math.sin(0.35 * i), 0.3 - 0.13 * math.cos(0.35 * i)) for i in range(10)] + \
        [(0.35 + 0.22 * math.sin(0.35 * i), 0.6 - 0.16 * math.cos(0.35 * i)) for i in range(10)]  # two arcs
ACROSS_THE_BOTTOM = [(0.2, 0.62), (0.8, 0.62), (0.8, 0.72), (0.2, 0.72), (0.2, 0.82), (0.8, 0.82)]


def drawing_session(browser, viewport: str):
    """(context, page, touch): a browser page to draw on, with a finger (touch events) on the phone."""
    phone = viewport == "phone"
    context = browser.new_context(viewport=VIEWPORTS[viewport], has_touch=phone, is_mobile=phone)
    page = context.new_page()
    return context, page, context.new_cdp_session(page) if phone else None


def stroke(page, canvas, points, touch) -> None:
    """One stroke through points (fractions of the canvas) with the mouse, or a finger (touch events)."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    at = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    if touch is None:
        page.mouse.move(*at[0])
        page.mouse.down()
        for x, y in at[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()
    else:
        touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": at[0][0], "y": at[0][1]}]})
        for x, y in at[1:]:
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_drawing_and_repairing_with_a_mouse_or_a_finger(browser, served_app, screenshots, viewport, capsys):
    """Draw a 3 (the mouse on a desktop, a finger on a phone), let the model finish it and watch
    the animation; then take it to Repair, paint over its bottom half and have it filled in."""
    from playwright.sync_api import expect

    phone = viewport == "phone"
    context, page, touch = drawing_session(browser, viewport)
    shoot = lambda name: page.screenshot(path=screenshots / f"{viewport}-9-{name}.png", full_page=True)  # noqa: E731
    try:
        page.goto(served_app)
        page.get_by_role("tab", name="Draw").click()
        canvas = page.locator("#canvas canvas").first
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] and box["width"] >= 250, \
            f"the canvas should be big enough to draw on, and whole: {box}"
        blank = dark_share(canvas.screenshot())
        stroke(page, canvas, THREE, touch)
        wait_until(lambda: dark_share(canvas.screenshot()) > blank + 0.02, "the stroke showing on the canvas")
        drawn = dark_share(canvas.screenshot())
        shoot("draw-before")
        status = page.locator("#draw-status")
        page.locator("#draw").click()
        shoot("draw-during")
        expect(status).to_contain_text("Finished as a 3")
        shoot("draw-after")
        if os.environ.get("README_ASSETS") and not phone:
            page.screenshot(path=Path(os.environ["README_ASSETS"]) / "app-draw.png")
        model_input = page.locator("#draw-input img")
        expect(page.locator("#draw-input figcaption")).to_have_text("what the model gets: read as a 3")
        animation = page.locator("#draw-picture img")
        assert animation.get_attribute("src").startswith("data:image/gif")
        animation.scroll_into_view_if_needed()
        frames = distinct_frames(picture_gif(page, "#draw-picture img"))
        wait_until_it_plays(animation, "the finished drawing's denoising")
        width = page.viewport_size["width"]
        for image in (model_input, animation):
            box = image.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["width"] >= 100, box
        with capsys.disabled():
            print(f"\nbrowser ({viewport}): draw: ink on the canvas {blank:.3f} -> {drawn:.3f}; an animation of "
                  f"{frames} distinct pictures; {status.inner_text()}", end="")
        assert frames >= 12, "the finished drawing's denoising: at least 12 distinct pictures"
        expect(page.locator("#draw-gif a").first).to_be_visible()
        assert no_sideways_scrolling(page)

        page.get_by_role("tab", name="Repair").click()
        editor = page.locator("#repair-editor canvas").first
        expect(editor).to_be_visible()
        generated = editor.screenshot()
        page.locator("#use-drawing").click()
        wait_until(lambda: editor.screenshot() != generated, "the editor showing the finished drawing")
        shoot("repair-before")
        stroke(page, editor, ACROSS_THE_BOTTOM, touch)
        status = page.locator("#repair-status")
        page.locator("#repair").click()
        shoot("repair-during")
        expect(status).to_contain_text("Repaired as a 3")
        expect(page.locator("#repair-input figcaption")).to_have_text(["what the model keeps", "the part to fill in"])
        assert page.locator("#repair-picture img").get_attribute("src").startswith("data:image/gif")
        assert no_sideways_scrolling(page)
        shoot("repair-after")
    finally:
        shoot("last")
        context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_repair_says_what_to_do_first(browser, served_app, screenshots, viewport):
    """Repair asked for too early: with no finished drawing to take, or nothing painted over, the
    page says what to do, where a person sees it."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORTS[viewport])
    try:
        page.goto(served_app)
        page.get_by_role("tab", name="Repair").click()
        page.locator("#use-drawing").click()
        expect(page.get_by_text("finish a drawing in the Draw tab first")).to_be_visible()
        page.locator("#repair").click()
        expect(page.get_by_text("paint over the part of the digit to fill in (or pick a part), then press Repair")).to_be_visible()
        page.screenshot(path=screenshots / f"{viewport}-9-repair-too-early.png", full_page=True)
    finally:
        page.close()


# Where the Write tab's pictures are, how big one digit of the line is on screen, and whether your
# digit stands beside the line (or above it) and nothing covers either.
WRITE_FIGURES = """() => [...document.querySelectorAll("#write-figures figure")].map(figure => {
    const img = figure.querySelector("img"), r = img.getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {caption: figure.querySelector("figcaption").innerText, left: r.left, right: r.right, top: r.top,
            bottom: r.bottom, scale: r.width / img.naturalWidth, uncovered: top === img || img.contains(top)};
})"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_writing_a_number_and_a_row_in_your_hand(browser, served_app, screenshots, viewport, capsys):
    """Write a date in one hand and watch it; then draw a 3 (mouse or finger) and have the ten digits
    written in its hand, shown beside it."""
    from playwright.sync_api import expect

    phone = viewport == "phone"
    context, page, touch = drawing_session(browser, viewport)
    shoot = lambda name: page.screenshot(path=screenshots / f"{viewport}-10-{name}.png", full_page=True)  # noqa: E731
    try:
        page.goto(served_app)
        page.get_by_role("tab", name="Write a number").click()
        expect(page.locator("#write")).to_be_visible()
        shoot("write-before")
        page.locator("#number textarea, #number input").first.fill("27 11 2026")
        status = page.locator("#write-status")
        page.locator("#write").click()
        expect(status).to_contain_text("Step")
        shoot("write-during")
        expect(status).to_contain_text("27 11 2026 in the hand of seed 0: written in")
        expect(status).to_contain_text("reads it as 2 7 1 1 2 0 2 6")
        shoot("write-after")
        [line] = page.evaluate(WRITE_FIGURES)
        width = page.viewport_size["width"]
        assert line["uncovered"] and line["left"] >= 0 and line["right"] <= width, line
        assert 28 * line["scale"] >= MIN_CELL_PX[viewport], f"a written digit should be big enough to read: {line}"
        animation = page.locator("#write-picture img")
        assert animation.get_attribute("src").startswith("data:image/gif")
        animation.scroll_into_view_if_needed()
        wait_until_it_plays(animation, "the number's writing")
        expect(page.locator("#write-picture .play-pause")).to_have_text("Pause animation")
        expect(page.locator("#write-png a").first).to_be_visible()
        assert no_sideways_scrolling(page)

        canvas = page.locator("#hand-canvas canvas").first
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["width"] >= 250, box
        blank = dark_share(canvas.screenshot())
        stroke(page, canvas, THREE, touch)
        wait_until(lambda: dark_share(canvas.screenshot()) > blank + 0.02, "the stroke showing on the canvas")
        page.locator("#write-mine").click()
        expect(status).to_contain_text("0123456789 in the hand of your 3: written in")
        expect(status).to_contain_text("reads it as 0 1 2 3 4 5 6 7 8 9")
        page.locator("#write-figures").scroll_into_view_if_needed()
        shoot("write-mine-after")
        yours, line = page.evaluate(WRITE_FIGURES)
        assert yours["caption"] == "your 3" and yours["uncovered"] and line["uncovered"], (yours, line)
        assert yours["right"] <= line["left"] if not phone else yours["bottom"] <= line["top"], \
            f"your digit beside the line (above it on a phone): {yours}, {line}"
        assert line["right"] <= width and 28 * line["scale"] >= MIN_CELL_PX[viewport], line
        assert no_sideways_scrolling(page)
        with capsys.disabled():
            print(f"\nbrowser ({viewport}): write: a digit of the line {28 * line['scale']:.0f} px; {status.inner_text()}",
                  end="")
    finally:
        context.close()


# The How it learned tab's pictures: each snapshot's row of ten digits, its size on screen, and
# whether it is in the viewport's width and uncovered.
LEARNED_FIGURES = """() => [...document.querySelectorAll("#learned-figures figure")].map(figure => {
    const img = figure.querySelector("img"), r = img.getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {caption: figure.querySelector("figcaption").innerText, alt: img.alt, left: r.left, right: r.right,
            cell: 28 * r.width / img.naturalWidth, uncovered: top === img || img.contains(top)};
})"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_how_it_learned_and_live_mode(browser, served_app, screenshots, viewport, capsys):
    """The recorded run: the ten digits at every snapshot, the loss curve marking the one picked, and
    a snapshot's denoising playing. Then Live on the Generate tab: moving the guidance shows the
    new final image, with no Generate."""
    from playwright.sync_api import expect
    from diffusion.progress import snapshot_steps

    page = browser.new_page(viewport=VIEWPORTS[viewport])
    shoot = lambda name: page.screenshot(path=screenshots / f"{viewport}-11-{name}.png", full_page=True)  # noqa: E731
    width, steps = VIEWPORTS[viewport]["width"], snapshot_steps()
    try:
        page.goto(served_app)
        page.get_by_role("tab", name="How it learned").click()
        expect(page.locator("#learned-figures figure")).to_have_count(len(steps))
        shoot("learned-before")
        rows = page.evaluate(LEARNED_FIGURES)
        assert [row["caption"].split(" · ")[0] for row in rows] == [f"step {step:,}" for step in steps]
        for row in rows:
            assert row["left"] >= 0 and row["right"] <= width and row["cell"] >= MIN_CELL_PX["phone"], row
            assert "0 to 9 as the model at step" in row["alt"]
        chart = page.locator("#learned-loss svg")
        assert chart.bounding_box()["width"] <= width and chart.locator("circle").count() == 1
        expect(chart).to_have_attribute("aria-label", re.compile(f"marked: step {steps[0]:,} "))
        page.locator("#snapshot label").filter(has_text=f"step {steps[-1]:,} ·").click()
        expect(chart).to_have_attribute("aria-label", re.compile(f"marked: step {steps[-1]:,} "))
        page.locator("#learned-generate").click()
        status = page.locator("#learned-status")
        expect(status).to_contain_text(f"by the model at step {steps[-1]:,}: the classifier reads it as 3")
        shoot("learned-after")
        animation = page.locator("#learned-picture img")
        animation.scroll_into_view_if_needed()
        wait_until_it_plays(animation, "the snapshot's denoising")
        cell = page.evaluate("""() => { const img = document.querySelector("#learned-picture img");
            return 28 * img.getBoundingClientRect().width / img.naturalWidth; }""")
        assert cell >= MIN_CELL_PX[viewport] and no_sideways_scrolling(page), cell

        page.get_by_role("tab", name="Generate").click()
        page.locator("#live-mode input").check()
        picture = page.locator("#denoising img")
        expect(picture).to_have_attribute("alt", re.compile("guidance 2.5 .*the final image, live"))
        expect(page.locator("#denoising .label")).to_have_text("The final image (live)")
        before = picture.get_attribute("src")
        page.locator("#guidance input[type=range]").focus()
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        expect(picture).to_have_attribute("alt", re.compile("guidance 3 .*live"))
        assert picture.get_attribute("src") != before, "a new picture, not only a new description"
        expect(page.locator("#status")).to_contain_text("Live: Digit 3")
        expect(page.locator("#probabilities figcaption")).to_contain_text("3: ")
        assert page.locator("#generate").is_enabled() and cell_px(page) >= MIN_CELL_PX[viewport]
        shoot("live")
        with capsys.disabled():
            print(f"\nbrowser ({viewport}): how it learned: a digit {rows[-1]['cell']:.0f} px in the rows, "
                  f"{cell:.0f} px in the animation; live: {page.locator('#status').inner_text()}", end="")
    finally:
        page.close()
