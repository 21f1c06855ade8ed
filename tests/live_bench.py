"""Live mode in the browser: from a change of a setting to the new picture painted.

    python -m tests.live_bench          # 20 changes of guidance, then of seed, for one digit and for all ten; a burst

Serves the app in this process on a free 127.0.0.1 port, as `python app.py` does, and drives it in
headless Chromium (CHROMIUM, default /usr/bin/chromium) at 1280x900 with Live on. Each change is an
arrow key on a focused control, as a keyboard user changes it: Right on the guidance slider (0.05
more, a value not seen before, as in a drag), or Up in the seed box (the next seed). The page
itself times it, from the control's input event to just after the paint of the frame that first
shows the picture naming the new value, decoded (a message posted from that frame's animation
callback, which the browser delivers once the frame is painted).
Prints the median and 95th percentile of 20 changes of each kind, for one digit and for all ten.
A change of guidance reuses the first steps' forward passes (batching.RecentForwardPasses); a
change of seed computes every step.

Then the burst: 50 changes in one second. It reports how many of them the server computed (the
rest were dropped: only the latest waiting change is computed), whether the page ends on the
last value, and how many runs are still going a second after that (none, if nothing piles up).
"""

import argparse
import statistics
import threading
import time

import webapp
from diffusion import Pipeline
from webapp.live import Live

from .conftest import CHROMIUM, free_port

# The settings changed: the control, the key that changes it, and the word before its value in the
# live picture's alternative text.
GUIDANCE = ("#guidance input[type=range]", "ArrowRight", "guidance")
SEED = ("#seed input", "ArrowUp", "seed")

# In the page, before a key is pressed on the control: note the time of its input event.
NOTE_INPUT = """(control) => {
  window.changedAt = null;
  document.querySelector(control).addEventListener(
    'input', () => { window.changedAt = performance.now(); }, {once: true, capture: true});
}"""
# Then: wait for the live picture that says the control's new value, decoded and drawn; resolve with
# the milliseconds since the input event.
WAIT_FOR_PICTURE = """async ([control, word]) => {
  const input = document.querySelector(control);
  const picture = document.querySelector('#denoising');
  const shown = () => {
    const img = picture.querySelector('img'), said = img && img.alt.match(new RegExp(word + ' ([0-9.]+)'));
    return said && window.changedAt !== null && Math.abs(parseFloat(said[1]) - parseFloat(input.value)) < 1e-9 && img;
  };
  // Watched for changes rather than polled each frame, so as not to take the server's CPU.
  const img = shown() || await new Promise((resolve) => {
    const watch = new MutationObserver(() => { const found = shown(); if (found) { watch.disconnect(); resolve(found); } });
    watch.observe(picture, {subtree: true, childList: true, attributes: true});
  });
  await img.decode();
  // The next frame paints it; a message posted from its animation callback arrives after that paint.
  return await new Promise((resolve) => requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve(performance.now() - window.changedAt);
    channel.port2.postMessage(null);
  }));
}"""


class Counted:
    """Live.update wrapped: how many runs started, and how many are going now."""

    def __init__(self):
        self.started, self.going, self.lock = 0, 0, threading.Lock()
        update = Live.update

        def counted(live, *args):
            with self.lock:
                self.started += 1
                self.going += 1
            try:
                return update(live, *args)
            finally:
                with self.lock:
                    self.going -= 1
        Live.update = counted


def serve() -> tuple[str, object]:
    blocks = webapp.build_app(Pipeline.load(device="cpu", shared=True))
    port = free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True, **{
        k: v for k, v in webapp.LAUNCH_OPTIONS.items() if k != "quiet"})
    return f"http://127.0.0.1:{port}/", blocks


def open_live(browser, url: str):
    """The page at 1280x900 with Live on, its first live picture shown."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.click("#live-mode input")
    page.wait_for_function("document.querySelector('#denoising img')?.alt.includes('live')", timeout=120_000)
    return page


def time_changes(page, changes: int, setting: tuple[str, str, str] = GUIDANCE) -> list[float]:
    """Milliseconds from each change of the setting (GUIDANCE or SEED) to its picture."""
    control, key, word = setting
    page.focus(control)
    times = []
    for _ in range(changes):
        page.evaluate(NOTE_INPUT, control)
        page.keyboard.press(key)
        times.append(page.evaluate(WAIT_FOR_PICTURE, [control, word]))
    return times


def burst(page, counted: Counted, changes: int = 50, within_s: float = 1.0) -> str:
    page.focus(GUIDANCE[0])
    page.keyboard.press("Home")  # guidance 0
    page.wait_for_function("document.querySelector('#denoising img')?.alt.includes('guidance 0 ')", timeout=60_000)
    before = counted.started
    for _ in range(changes):
        page.keyboard.press("ArrowRight")
        time.sleep(within_s / changes)
    last = page.eval_on_selector(GUIDANCE[0], "slider => slider.value")
    page.wait_for_function(f"document.querySelector('#denoising img')?.alt.includes('guidance {float(last):g} ')",
                           timeout=60_000)
    computed = counted.started - before
    time.sleep(1)
    return (f"{changes} changes in {within_s:g} s (guidance 0 to {float(last):g}): {computed} computed, the page ends "
            f"on guidance {float(last):g}, {counted.going} runs still going a second later")


def main() -> None:
    from playwright.sync_api import sync_playwright
    p = argparse.ArgumentParser(prog="python -m tests.live_bench", description=__doc__.split("\n")[0])
    p.add_argument("--changes", type=int, default=20)
    args = p.parse_args()
    counted = Counted()
    url, blocks = serve()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = open_live(browser, url)
            page.click("#random-seed input")  # off: the seed box shows the picture's seed
            page.wait_for_selector(SEED[0])
            time_changes(page, 4)  # warm-up, not counted
            for what, choice in (("one digit", "3"), ("all ten", "all ten")):
                page.get_by_label(choice, exact=True).check()
                page.wait_for_function(f"document.querySelector('#denoising img')?.alt.startsWith("
                                       f"'{'Digit 3' if choice == '3' else 'Digits'}')", timeout=60_000)
                for name, setting in (("guidance", GUIDANCE), ("seed", SEED)):
                    times = sorted(time_changes(page, args.changes, setting))
                    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                    print(f"{what}, changing the {name}: median {statistics.median(times):.0f} ms, 95th percentile "
                          f"{p95:.0f} ms ({args.changes} changes, input event to painted picture)", flush=True)
            page.get_by_label("3", exact=True).check()
            print(burst(page, counted), flush=True)
            browser.close()
    finally:
        blocks.close()


if __name__ == "__main__":
    main()
