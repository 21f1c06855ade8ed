"""How the page looks and behaves in the browser: the theme, the style, the script in its head,
and the templates of the pictures and readings that the tabs fill in."""

import gradio as gr

# WCAG 2.2 AA asks for text at 4.5:1 against its background and controls at 3:1. Gradio's
# subdued grey (#bbbbc2: 1.9:1 on white) and white on its orange (#f97316: 2.8:1) fall short;
# the grey one shade darker (4.8:1) and the orange three (white on it 5.2:1) keep the look.
THEME = gr.themes.Default().set(
    body_text_color_subdued="*neutral_500",  # info under a control, a slider's ends, the footer
    button_primary_background_fill="*primary_700", button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover="*primary_800", button_primary_background_fill_hover_dark="*primary_800",
    button_primary_border_color="*primary_700", button_primary_border_color_dark="*primary_700",
    button_primary_border_color_hover="*primary_800", button_primary_border_color_hover_dark="*primary_800",
    color_accent="*primary_700",  # the selected tab's name, a slider's track, a ticked box
    # Stop while a run goes: white on red #ef4444 is 3.8:1; on #b91c1c (Gradio's dark-mode red) 6.5:1.
    button_cancel_background_fill="#b91c1c", button_cancel_background_fill_hover="#991b1b",
    link_text_color_visited="*secondary_600",
)

# What the page needs whatever Gradio renders, kept up as it renders more:
# - names that are valid ARIA: Gradio's empty File shows an icon named "Empty value" on a bare div;
# - a radio group that is one group to the keyboard (Gradio gives each option its own name);
# - the live regions (.live-region) that tell a screen reader how a run ended, once (not each preview);
# - "Skip to the controls", which focuses the open tab's first control;
# - a Pause / Play button under every looping animation; with prefers-reduced-motion, a still until Play.
HEAD = """<script>
(() => {
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  const show = (button, playing) => {
    const img = button.parentElement.querySelector("img[data-still]");
    img.src = playing ? img.dataset.animation : img.dataset.still;
    button.textContent = playing ? "Pause animation" : "Play animation";
  };
  const fix = () => {
    document.querySelectorAll('div[aria-label="Empty value"]:not([role])').forEach(el => el.setAttribute("role", "img"));
    document.querySelectorAll("div.image-container[aria-label]:not([role])").forEach(el => el.setAttribute("role", "group"));
    document.querySelectorAll("fieldset").forEach(group => {  // Gradio names each option apart: one group for
      const options = group.querySelectorAll("input[type=radio]");  // Tab, the arrow keys among its options
      options.forEach(option => { if (option.name !== options[0].name) option.name = options[0].name; });
    });
    document.querySelectorAll(".live-region .prose:not([role])").forEach(el => {  // the text, not Gradio's timer
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
    });
    document.querySelectorAll("img[data-still]:not([data-animation])").forEach(img => {
      img.dataset.animation = img.src;
      if (reduceMotion.matches) show(img.parentElement.querySelector(".play-pause"), false);
    });
  };
  new MutationObserver(fix).observe(document.documentElement,
                                   {childList: true, subtree: true, attributes: true, attributeFilter: ["name"]});
  document.addEventListener("click", event => {
    const button = event.target.closest(".play-pause");
    if (button) show(button, button.textContent.startsWith("Play"));
    if (!event.target.closest(".skip-link")) return;
    event.preventDefault();
    const panel = [...document.querySelectorAll('[role="tabpanel"]')].find(panel => panel.offsetParent !== null);
    const first = panel && panel.querySelector("input:not([type=hidden]), button, textarea, [tabindex='0']");
    const chosen = first && first.type === "radio" && panel.querySelector(`input[name="${first.name}"]:checked`);
    if (first) (chosen || first).focus();  // in a radio group, Tab would land on its chosen one too
  });
})();
</script>"""

# The browser scales 28 px digits up without blurring; pictures never overflow a phone's width.
CSS = """
.picture img, .figures img { image-rendering: pixelated; display: block; max-width: 100%; height: auto; margin: 0 auto; }
.picture .label, .figures figcaption { text-align: center; margin: 6px 0; }
.picture .placeholder { min-height: 480px; display: flex; align-items: center; justify-content: center; opacity: 0.7; }
.figures { display: flex; flex-wrap: wrap; justify-content: center; gap: 8px 24px; }
.figures figure { margin: 0; max-width: 100%; }
#guidance-rows figure { flex-basis: 100%; }
#status { min-height: 1.5em; text-align: center; }
#denoising .html-container, #guidance-rows .html-container, #forward-figures .html-container { padding: 0; }
#gif .empty, #png .empty, #morph-gif .empty, .download .empty { min-height: 0; height: 48px; }  /* no tall empty boxes before a run */
.edit-row .picture .placeholder { min-height: 240px; }
#write-picture .picture .placeholder { min-height: 160px; }  /* a line of digits: wide, not tall */
#unet-diagram svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
/* The loss chart: drawn 360 wide, so that its labels stay readable when a phone shrinks it. */
#learned-loss svg { display: block; width: 100%; max-width: 560px; height: auto; margin: 0 auto; }
#picture-row { flex-wrap: wrap; justify-content: center; align-items: flex-start; }
#picture-row > div { flex: 0 1 auto; min-width: min(300px, 100%) !important; width: auto; }
#picture-row > #probabilities { flex: 1 1 300px; }  /* beside the picture, or below a wide one: the whole row */
.readings .heading { text-align: center; margin: 4px auto; max-width: 620px; }
.readings .panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 4px 16px; }
.readings figure { margin: 0 auto; width: 100%; max-width: 300px; }
.readings svg { display: block; width: 100%; height: auto; }
.readings figcaption { text-align: center; font-size: 0.9em; }
#probabilities .html-container, #morph-figures .html-container, #point-figures .html-container { padding: 0; }
@media (max-width: 640px) { .gradio-container .main { padding-left: 12px !important; padding-right: 12px !important; } }
.dark { --color-accent: var(--primary-500); }  /* on the dark background, the lighter orange reads better */
.play-pause { display: block; margin: 6px auto; min-height: 32px; padding: 4px 14px; border-radius: 6px; white-space: nowrap;
  font-size: var(--text-md); font-weight: normal; border: 1px solid var(--neutral-500);
  background: var(--background-fill-primary); color: var(--body-text-color); }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }
#skip { position: absolute; }  /* takes no room in the page */
.skip-link { position: absolute; left: 8px; top: -100px; z-index: 100; padding: 8px 14px; border-radius: 6px;
  background: var(--primary-700); color: white !important; transition: none !important; }
.skip-link:focus { top: 8px; }
/* Focus that shows at once, in the text's colour: clear on white, on the orange buttons, and in dark mode. */
:focus-visible { outline: 3px solid var(--body-text-color) !important; outline-offset: 2px; transition: none !important; }
/* The drawing editors' toolbar buttons (Pan, Zoom, Undo...): at least 24 x 24 px to touch. */
.drawing .icon-button-wrapper button.icon-button, #repair-editor .icon-button-wrapper button.icon-button {
  min-width: 24px; min-height: 24px; justify-content: center; }
.drawing .zoom-number span, #repair-editor .zoom-number span { display: inline-flex; align-items: center; min-height: 24px; }
@media (prefers-reduced-motion: reduce) {
  *, *::before, *::after { animation-duration: 0.01ms !important; animation-iteration-count: 1 !important;
    transition-duration: 0.01ms !important; scroll-behavior: auto !important; } }
"""


# Under every looping animation; HEAD's script swaps the animation and its still.
PLAY_PAUSE = '`<button type="button" class="play-pause">Pause animation</button>`'


def picture_template(placeholder: str) -> str:
    """The live picture: one image, x_t above x0, with its labels outside it (or, a final image, its
    caption above it); before a run, what to do."""
    return ("""<div class="picture">${value ? `
  <p class="label">${value.caption || "x<sub>t</sub>: the noisy sample (top half)"}</p>
  <img src="${value.src}" alt="${value.alt}" style="width: ${value.width}px"${value.still ? ` data-still="${value.still}"` : ""}>
  ${value.caption ? "" : `<p class="label">x&#x302;<sub>0</sub>: the model's guess of the clean digit (bottom half)</p>`}
  ${value.still ? PLAY_PAUSE : ""}` :
  `<p class="placeholder">""" + placeholder + """</p>`}</div>""").replace("PLAY_PAUSE", PLAY_PAUSE)


# Labelled pictures, side by side where they fit (one a row for the guidance scales).
FIGURES_TEMPLATE = """<div class="figures">${(value || []).map(figure => `<figure>
  <figcaption>${figure.label}</figcaption><img src="${figure.src}" alt="${figure.alt || figure.label}"
  style="width: ${figure.width}px"${figure.still ? ` data-still="${figure.still}"` : ""}>
  ${figure.still ? PLAY_PAUSE : ""}</figure>`).join("")}</div>""".replace("PLAY_PAUSE", PLAY_PAUSE)
# What the classifier reads: a heading, then a panel (bars or a chart, as SVG) per digit.
READINGS_TEMPLATE = """<div class="readings">${value ? `<p class="heading">${value.heading}</p>
  <div class="panels">${value.panels.map(panel => `<figure>${panel.svg}<figcaption>${panel.caption}</figcaption>
  </figure>`).join("")}</div>` : ""}</div>"""
