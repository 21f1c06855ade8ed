"""A real browser uses the app as a person would: Debian's chromium, driven by Playwright.

Needs `apt-get install -y chromium` and `pip install playwright` (both done by .ci/run);
CHROMIUM names another Chromium binary, APP_SCREENSHOT a path to keep the screenshot at.
"""

import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Records, at every painted animation frame, the denoising picture on screen if it is new and
# fully decoded (what a person saw, and when), and when Generate was clicked.
RECORD_FRAMES = """() => {
    window.framesSeen = [];
    const watch = () => {
        const img = document.querySelector("#denoising img");
        const last = window.framesSeen[window.framesSeen.length - 1];
        if (img && img.complete && img.naturalWidth > 0 && (!last || last[1] !== img.src)) {
            window.framesSeen.push([performance.now(), img.src]);
        }
        requestAnimationFrame(watch);
    };
    requestAnimationFrame(watch);
    document.addEventListener("click", (event) => {
        if (event.target.closest("#generate")) window.clickedAt = performance.now();
    }, true);
}"""


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs Playwright: pip install -r requirements-dev.txt")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser test needs Chromium at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def test_a_digit_emerges_live_and_the_gif_downloads(browser, served_app, tmp_path, capsys):
    from playwright.sync_api import expect
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(served_app)
    page.locator("#digit").get_by_label("7", exact=True).check()
    page.locator("#guidance input[type=range]").fill("3")
    assert page.locator("#guidance input[type=number]").input_value() == "3"
    # DDIM's 50 steps give the stream time to show many frames; the step slider follows the sampler.
    page.locator("#sampler").get_by_label("DDIM", exact=True).check()
    expect(page.locator("#steps input[type=number]")).to_have_value("50")
    page.evaluate(RECORD_FRAMES)

    page.locator("#generate").click()
    page.locator("#gif a").first.wait_for(timeout=60_000)
    details = page.get_by_text("Digit 7,").inner_text()
    assert "DDIM, 50 steps" in details
    frames_seen, clicked_at = page.evaluate("[window.framesSeen, window.clickedAt]")

    assert "guidance 3" in details
    assert len(frames_seen) >= 3, f"expected at least 3 distinct streamed frames on screen, saw {len(frames_seen)}"
    with capsys.disabled():
        print(f"\nbrowser: first streamed frame on screen {frames_seen[0][0] - clicked_at:.0f} ms after clicking "
              f"Generate; {len(frames_seen)} distinct frames seen; {details}")

    with page.expect_download() as download:
        page.locator("#gif a").first.click()
    gif_path = tmp_path / download.value.suggested_filename
    download.value.save_as(gif_path)
    assert gif_path.name.startswith("mnist-digit-7_ddim-50-steps_guidance-3_seed-")
    gif = iio.imread(gif_path, index=None)
    assert gif.ndim == 3 and len(gif) == 50, "the GIF should hold the whole process, a frame per step"

    screenshot = tmp_path / "app.png"
    page.screenshot(path=screenshot, full_page=True)
    if os.environ.get("APP_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["APP_SCREENSHOT"])
