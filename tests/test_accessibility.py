"""Every student can use the page (WCAG 2.2 AA), checked in Chromium on a desktop (1280x900) and
a phone (390x844):

- axe-core finds no serious or critical violation on any of the six tabs, before and after a run;
  the moderate and minor findings are printed (docs/accessibility.md says why each is left);
- the keyboard alone skips to the controls, runs Generate and Stop, a morph, a drawing started
  from a generated digit, and a repair of a chosen part, with a visible focus all the way;
- a screen reader hears a run start and end in a polite live region, not every preview;
- every looping animation has a Pause button, and with prefers-reduced-motion nothing loops
  until Play is pressed; every picture has alternative text saying what it shows.

Needs Chromium (as tests/test_browser.py) and axe-core, which `npm ci --prefix tests` installs
(.ci/run does). Screenshots of focus states and paused animations go to the folder it prints.
"""

import io
import re

import numpy as np
import pytest
from PIL import Image

from .conftest import ROOT, VIEWPORTS, dark_share, wait_until

pytestmark = pytest.mark.slow  # needs Chromium and axe-core: see docs/testing.md
AXE = ROOT / "tests" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
# Each tab, and its main button (or what it shows first): there once the tab is open.
TABS = {"Generate": "#generate", "How guidance works": "#compare", "Morph": "#morph", "Draw": "#draw",
        "Repair": "#repair", "Write a number": "#write", "Forward process": "#forward-details",
        "How it learned": "#learned-generate"}
# Until every CSS transition on the page is over (the endless ones, such as a spinner, aside).
TRANSITIONS_OVER = """() => document.getAnimations().every(a =>
    a.playState !== "running" || a.effect.getComputedTiming().iterations === Infinity)"""
MAX_TAB_PRESSES = 60
# The page's focused element: what it is, and whether it is on screen.
FOCUSED = """() => { const e = document.activeElement; const r = e.getBoundingClientRect();
    return {tag: e.tagName, id: e.id, role: e.getAttribute("role") || "", text: (e.innerText || e.value || "").trim().slice(0, 40),
            label: e.getAttribute("aria-label") || "", inside: e.closest("[id]") ? e.closest("[id]").id : "",
            visible: r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < window.innerHeight}; }"""


def wait_for_a_digit_on_the_canvas(page) -> None:
    """Until Draw says a generated digit is on its canvas, and the canvas shows it."""
    from playwright.sync_api import expect
    expect(page.locator("#draw-announcement")).to_contain_text("on the canvas")
    canvases = page.locator("#canvas canvas")

    def as_things_stand() -> str:
        shares = [f"{dark_share(canvas.screenshot()):.3f}" for canvas in canvases.all()]
        return (f"the generated digit on the canvas (dark share of each of its canvases: {shares}; messages "
                f"shown: {page.locator('.toast-body').all_inner_texts()})")
    wait_until(lambda: dark_share(canvases.first.screenshot()) > 0.02, as_things_stand)


def focus_ring_drawn(page) -> bool:
    """Whether the screen shows a ring around the focused element now: most of the band 2 to 5 px
    outside it is dark (the outline is in the text's colour), as a person would see it."""
    box = page.evaluate("() => { const r = document.activeElement.getBoundingClientRect(); "
                        "return {x: r.x, y: r.y, width: r.width, height: r.height}; }")
    margin = 6
    clip = {"x": box["x"] - margin, "y": box["y"] - margin, "width": box["width"] + 2 * margin,
            "height": box["height"] + 2 * margin}
    grey = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip, animations="allow"))).convert("L"))
    inner = np.zeros(grey.shape, bool)
    inner[margin - 1:-(margin - 1), margin - 1:-(margin - 1)] = True  # the element and the 1 px around it
    band = ~inner
    band[:1], band[-1:], band[:, :1], band[:, -1:] = False, False, False, False  # 5 px out and beyond
    return (grey[band] < 100).mean() > 0.5


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"the accessibility test needs axe-core at {AXE}: npm ci --prefix tests "
                    "(or leave the slow tests out: -m 'not slow')")
    return AXE.read_text()


def axe_findings(page, axe_source: str) -> list[dict]:
    """axe-core's violations of WCAG 2.0-2.2 A and AA and its best practices on the page as it is now."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(content=axe_source)
    result = page.evaluate("(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "where": [node["target"] for node in v["nodes"]][:5]} for v in result["violations"]]


def run_in_tab(page, tab: str) -> None:
    """The tab's main action, with the mouse, waited for to its end."""
    from playwright.sync_api import expect
    if tab == "Generate":
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("made in")
        expect(page.locator("#generate")).to_be_enabled()
    elif tab == "How guidance works":
        page.locator("#compare").click()
        expect(page.locator("#guidance-rows img")).to_have_count(6)
    elif tab == "Morph":
        page.locator("#morph").click()
        expect(page.locator("#morph-status")).to_contain_text("The classifier reads")
    elif tab == "Draw":
        page.locator("#draw-example").click()
        wait_for_a_digit_on_the_canvas(page)
        page.locator("#draw").click()
        expect(page.locator("#draw-status")).to_contain_text("Finished as a")
    elif tab == "Repair":
        page.locator("#repair-part").get_by_label("bottom half", exact=True).check()
        page.locator("#repair").click()
        expect(page.locator("#repair-status")).to_contain_text("Repaired as a")
    elif tab == "Write a number":
        page.locator("#write").click()
        expect(page.locator("#write-status")).to_contain_text("written in")
    elif tab == "How it learned":
        page.locator("#learned-generate").click()
        expect(page.locator("#learned-status")).to_contain_text("the classifier reads it as")
    else:
        expect(page.locator("#forward-details")).to_contain_text("alpha_bar =")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_axe_finds_no_serious_violation_on_any_tab(browser, gated_app, axe_source, screenshots, viewport, capsys):
    from playwright.sync_api import expect
    url, gate = gated_app
    page = browser.new_page(viewport=VIEWPORTS[viewport])
    serious, lesser = [], set()
    try:
        page.goto(url)
        page.locator("#generate").wait_for()
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            expect(page.locator(TABS[tab])).to_be_visible()
            for moment in ("before", "during", "after") if tab == "Generate" else ("before", "after"):
                if moment == "during":  # a run held at its first step: Stop is the live button
                    gate.hold()
                    page.locator("#generate").click()
                    expect(page.locator("#stop")).to_be_enabled()
                if moment == "after" and tab == "Generate":  # the held run let through to its end
                    gate.open()
                    expect(page.locator("#status")).to_contain_text("made in")
                    expect(page.locator("#generate")).to_be_enabled()
                elif moment == "after":
                    run_in_tab(page, tab)
                page.wait_for_function(TRANSITIONS_OVER)  # the buttons' colours as a person sees them
                findings = axe_findings(page, axe_source)
                serious += [(tab, moment, f) for f in findings if f["impact"] in ("serious", "critical")]
                lesser |= {(f["id"], f["impact"]) for f in findings if f["impact"] not in ("serious", "critical")}
                page.screenshot(path=screenshots / f"{viewport}-axe-{list(TABS).index(tab) + 1}-{moment}.png", full_page=True)
    finally:
        gate.open()
        page.close()
    with capsys.disabled():
        print(f"\naxe ({viewport}): moderate and minor findings left: {sorted(lesser) or 'none'}")
    assert not serious, "\n".join(f"{tab} ({moment}): {f['id']} ({f['impact']}): {f['help']} at {f['where']}"
                                  for tab, moment, f in serious)


def press_until(page, is_there, what: str, key: str = "Tab") -> int:
    """Press key (Tab, or Shift+Tab to go back) until is_there(the focused element); how many presses it took."""
    for presses in range(1, MAX_TAB_PRESSES + 1):
        page.keyboard.press(key)
        focused = page.evaluate(FOCUSED)
        if is_there(focused):
            assert focused["visible"], f"{what}: focused but not on screen: {focused}"
            return presses
    raise AssertionError(f"{what}: not reached in {MAX_TAB_PRESSES} presses of {key}")


def open_tab(page, name: str) -> None:
    """Back up to the tab list with Shift+Tab, and open the tab named `name` with Enter."""
    press_until(page, lambda f: f["role"] == "tab", "the tab list", "Shift+Tab")
    key = "Tab" if page.evaluate(FOCUSED)["text"] != name else None
    if key:
        order = page.evaluate("""() => [...document.querySelectorAll('[role=tab]')].map(t => t.innerText.trim())""")
        key = "Tab" if order.index(name) > order.index(page.evaluate(FOCUSED)["text"]) else "Shift+Tab"
        press_until(page, lambda f: f["role"] == "tab" and f["text"] == name, f"the {name} tab", key)
    page.keyboard.press("Enter")


def test_the_keyboard_alone_runs_generate_stop_morph_draw_and_repair(browser, gated_app, screenshots, capsys):
    """Skip link, arrow keys, Enter and Tab only; the focus ring is on screen at each stop."""
    from playwright.sync_api import expect
    url, gate = gated_app
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    report = []
    try:
        page.goto(url)
        page.locator("#generate").wait_for()
        # The first Tab shows "Skip to the controls"; Enter takes the focus to the open tab's first control.
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        assert focused["text"] == "Skip to the controls" and focused["visible"], focused
        assert focus_ring_drawn(page), "the skip link's focus shows"
        page.screenshot(path=screenshots / "keyboard-1-skip-link.png")
        page.keyboard.press("Enter")
        assert page.evaluate(FOCUSED)["inside"] == "digit", "the skip link leads to the Digit choice"
        page.keyboard.press("ArrowRight")  # the digit after 3
        expect(page.locator("#digit input[value='4']")).to_be_checked()
        presses = press_until(page, lambda f: f["id"] == "generate", "Generate")
        report.append(f"Generate {presses} presses of Tab after the skip link")
        assert focus_ring_drawn(page), "the focused button shows it, at once"
        page.screenshot(path=screenshots / "keyboard-2-generate-focused.png")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("made in")
        expect(page.locator("#status")).to_contain_text("Digit 4")

        # Generate hands the focus back when its run ends; Stop has it while a run goes.
        expect(page.locator("#generate")).to_be_focused()
        gate.hold()  # the next run waits at its first forward pass: Stop lands mid-run on any machine
        page.keyboard.press("Enter")
        expect(page.locator("#stop")).to_be_focused()
        assert focus_ring_drawn(page), "the focus on Stop shows"
        page.screenshot(path=screenshots / "keyboard-3-stop-focused.png")
        gate.allow(1)  # the run's first step, its preview on the page: the run is under way, held at its second
        expect(page.locator("#status")).to_contain_text("Step 1 of")
        page.keyboard.press("Enter")
        # Stop's own answer disables it: the server has the Stop before the held run may go on.
        expect(page.locator("#stop")).to_be_disabled()
        gate.open()
        expect(page.locator("#status")).to_contain_text("Stopped at step 2 of")
        expect(page.locator("#generate")).to_be_focused()

        # Morph: back to the tab list, and along it.
        open_tab(page, "Morph")
        expect(page.get_by_role("tab", name="Morph")).to_have_attribute("aria-selected", "true")
        presses = press_until(page, lambda f: f["id"] == "morph", "Morph's button")
        report.append(f"Morph {presses} presses of Tab from its tab")
        page.keyboard.press("Enter")
        expect(page.locator("#morph-status")).to_contain_text("The classifier reads")

        # Draw: no pointer needed to start a drawing.
        open_tab(page, "Draw")
        press_until(page, lambda f: f["id"] == "draw-example", "Start from a generated digit")
        page.keyboard.press("Enter")
        # What a screen reader hears; that the canvas shows the digit is checked where the mouse starts
        # one (run_in_tab). Here, finishing it as a digit shows that the canvas holds it (an empty one
        # is refused), without waiting on the canvas's repaint, which once took over 120 s in a full run.
        expect(page.locator("#draw-announcement")).to_contain_text("on the canvas")
        press_until(page, lambda f: f["id"] == "draw", "Finish my digit")
        page.keyboard.press("Enter")
        expect(page.locator("#draw-status")).to_contain_text("Finished as a")

        # Repair: a part chosen from the keyboard instead of painted.
        open_tab(page, "Repair")
        press_until(page, lambda f: f["inside"] == "repair-part", "Part to fill in")
        page.keyboard.press("ArrowRight")  # from "the part I painted" to "top half"
        expect(page.locator("#repair-part input[value='top half']")).to_be_checked()
        press_until(page, lambda f: f["id"] == "repair", "Repair's button")
        page.keyboard.press("Enter")
        expect(page.locator("#repair-status")).to_contain_text("Repaired as a")
        page.screenshot(path=screenshots / "keyboard-4-repaired.png", full_page=True)
    finally:
        gate.open()
        page.close()
    with capsys.disabled():
        print("\nkeyboard: " + "; ".join(report))


def test_the_keyboard_alone_writes_a_number_and_in_your_hand(browser, gated_app, screenshots):
    """Type a number, Write; then a generated digit on the canvas, and Write it in my hand: Tab,
    typing and Enter only."""
    from playwright.sync_api import expect
    url, _ = gated_app
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    try:
        page.goto(url)
        page.locator("#generate").wait_for()
        press_until(page, lambda f: f["role"] == "tab", "the tab list")
        open_tab(page, "Write a number")
        press_until(page, lambda f: f["inside"] == "number", "the number to write")
        page.keyboard.press("Control+A")
        page.keyboard.type("31 12")
        press_until(page, lambda f: f["id"] == "write", "Write")
        assert focus_ring_drawn(page)
        page.screenshot(path=screenshots / "keyboard-5-write-focused.png")
        page.keyboard.press("Enter")
        status = page.locator("#write-status")
        expect(status).to_contain_text("31 12 in the hand of seed 0: written in")
        press_until(page, lambda f: f["id"] == "hand-example", "Start from a generated digit")
        page.keyboard.press("Enter")
        expect(page.locator("#write-announcement")).to_contain_text("on the canvas")
        press_until(page, lambda f: f["id"] == "write-mine", "Write it in my hand")
        page.keyboard.press("Enter")
        expect(status).to_contain_text("0123456789 in the hand of your")
        expect(page.locator("#write-announcement")).to_contain_text("0123456789 in the hand of your")
        assert focus_ring_drawn(page), "the focus on Write it in my hand shows"
        page.screenshot(path=screenshots / "keyboard-6-written-in-your-hand.png", full_page=True)
    finally:
        page.close()


def test_the_keyboard_alone_turns_live_on_and_picks_a_snapshot(browser, gated_app, screenshots):
    """Live on and the guidance moved with the arrow keys; then a snapshot picked and generated in
    How it learned: Tab, Space, arrows and Enter only."""
    from playwright.sync_api import expect
    url, _ = gated_app
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    try:
        page.goto(url)
        page.locator("#generate").wait_for()
        focused_on = lambda selector: page.evaluate(f"() => document.activeElement.matches('{selector}')")  # noqa: E731
        press_until(page, lambda f: focused_on("#live-mode input"), "the Live switch")
        page.keyboard.press("Space")
        picture = page.locator("#denoising img")
        expect(picture).to_have_attribute("alt", re.compile("guidance 2.5 .*live"))
        press_until(page, lambda f: focused_on("#guidance input[type=range]"), "the guidance", "Shift+Tab")
        for _ in range(4):
            page.keyboard.press("ArrowRight")
        expect(picture).to_have_attribute("alt", re.compile("guidance 2.7 .*live"))
        assert focus_ring_drawn(page)
        page.screenshot(path=screenshots / "keyboard-7-live.png")
        open_tab(page, "How it learned")
        press_until(page, lambda f: focused_on("#snapshot input"), "the snapshots")
        page.keyboard.press("ArrowRight")  # the second snapshot
        press_until(page, lambda f: f["id"] == "learned-generate", "Generate")
        page.keyboard.press("Enter")
        expect(page.locator("#learned-status")).to_contain_text("the classifier reads it as")
        expect(page.locator("#learned-announcement")).to_contain_text("by the model at step")
        assert focus_ring_drawn(page)
        page.screenshot(path=screenshots / "keyboard-8-learned.png", full_page=True)
    finally:
        page.close()


def test_a_screen_reader_hears_a_run_start_and_end_not_each_step(browser, gated_app):
    """The live region says the run is waiting, then its result, and nothing between: a 50-step run's
    previews stay in the status, which is not a live region."""
    from playwright.sync_api import expect
    url, _ = gated_app
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    try:
        page.goto(url)
        page.locator("#generate").wait_for()
        region = page.locator("#generate-announcement .prose")
        expect(region).to_have_attribute("aria-live", "polite")
        expect(region).to_have_attribute("role", "status")
        page.evaluate("""() => { window.announced = [];
            const region = document.querySelector("#generate-announcement .prose");
            new MutationObserver(() => window.announced.push(region.innerText.trim()))
                .observe(region, {childList: true, subtree: true, characterData: true}); }""")
        page.locator("#sampler").get_by_label("DDIM", exact=True).check()
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("made in")
        expect(region).to_contain_text("made in")
        said = [text for text in dict.fromkeys(page.evaluate("window.announced")) if text]
        assert len(said) == 2 and said[0].startswith("Waiting") and "made in" in said[1], said
        assert page.locator("#status").get_attribute("aria-live") is None
        assert page.locator("#generate-announcement").get_attribute("role") is None, "Gradio's timer is not read out"
    finally:
        page.close()


def test_animations_pause_and_reduced_motion_shows_a_still(browser, gated_app, screenshots):
    """A finished run loops with a Pause button under it, which shows its last frame and turns into
    Play; with prefers-reduced-motion: reduce, the page starts on that still and plays on request."""
    from playwright.sync_api import expect
    url, _ = gated_app
    for motion in ("no-preference", "reduce"):
        page = browser.new_page(viewport=VIEWPORTS["desktop"], reduced_motion=motion)
        try:
            page.goto(url)
            page.locator("#generate").click()
            expect(page.locator("#status")).to_contain_text("made in")
            picture, button = page.locator("#denoising img"), page.locator("#denoising .play-pause")
            playing = motion == "no-preference"
            expect(button).to_have_text("Pause animation" if playing else "Play animation")
            assert picture.get_attribute("src").startswith("data:image/gif" if playing else "data:image/png")
            button.click()
            expect(button).to_have_text("Play animation" if playing else "Pause animation")
            assert picture.get_attribute("src").startswith("data:image/png" if playing else "data:image/gif")
            page.screenshot(path=screenshots / f"motion-{motion}-after-one-press.png")
            # The morph's loop too.
            page.get_by_role("tab", name="Morph").click()
            page.locator("#morph").click()
            expect(page.locator("#morph-status")).to_contain_text("The classifier reads")
            loop = page.locator("#morph-figures img").first
            assert loop.get_attribute("src").startswith("data:image/gif" if playing else "data:image/png")
            expect(page.locator("#morph-figures .play-pause")).to_have_text("Pause animation" if playing else "Play animation")
        finally:
            page.close()


def test_every_picture_says_what_it_shows(browser, gated_app):
    """After a run on each tab, every picture has alternative text beyond a file name, and the
    classifier's charts say their numbers."""
    url, _ = gated_app
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    try:
        page.goto(url)
        page.locator("#generate").wait_for()
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            run_in_tab(page, tab)
            alts = page.evaluate("""() => [...document.querySelectorAll("[role=tabpanel] img")]
                .filter(img => img.offsetParent !== null)
                .map(img => img.getAttribute("alt") || "")""")
            assert alts and all(len(alt) >= 15 for alt in alts), (tab, alts)
        page.get_by_role("tab", name="Generate").click()
        chart = page.locator("#probabilities svg").first.get_attribute("aria-label")
        assert "step 1:" in chart and "%" in chart, chart
    finally:
        page.close()
