"""The web demo's page: one module per tab (its layout and its handlers, which only turn widget
values into library calls and back), and shared.py for what they all use.

    app = build_app(Pipeline.load(shared=True))
    app.launch(**LAUNCH_OPTIONS)
"""

import time
from functools import partial

import gradio as gr

from diffusion import Pipeline, edit

from . import draw, forward, generate, guidance, learned, morph, repair, tools, write
from .editing import Editing
from .page import CSS, HEAD, THEME
from .server import delete_cut_off_uploads, refuse_malformed_values, sessions_without_deep_links
from .shared import Context

# Requests sampling at the same time share the model's forward passes (diffusion/batching.py): a
# hall of 100 pressing Generate together all sample at once. Up to MAX_QUEUE_SIZE more wait for a
# place; beyond, Gradio answers at once that the app is busy, to try again (docs/scaling.md).
MAX_RUNS_AT_ONCE = 100
MAX_QUEUE_SIZE = 100
CACHE_TTL_S = 3600  # how long generated files stay downloadable
SESSIONS_KEPT = 300  # more than can be under way at once (see LAUNCH_OPTIONS)

# How the server is launched: by app.py, and by the tests that serve the app in their own process.
LAUNCH_OPTIONS = {
    "css": CSS,
    "head": HEAD,
    "theme": THEME,
    "footer_links": ["api"],
    "quiet": True,  # Gradio's banner would suggest share=True, a public link this demo does not offer
    "max_file_size": edit.MAX_FILE_BYTES,  # uploads: Gradio refuses bigger files as they arrive
    "max_threads": MAX_RUNS_AT_ONCE + 40,  # threads for the runs, and to spare
    # Gradio keeps a state for each session (without its copy for deep links: server.py) until this
    # many newer sessions push it out; each API call is a session of its own. The app keeps
    # nothing of its own in Gradio's sessions, so a session pushed out loses nothing; but a run's
    # stream reads its session at each update, and would rebuild it were it pushed out mid-run.
    "state_session_capacity": SESSIONS_KEPT,
}


def build_app(pipe: Pipeline, max_runs_at_once: int = MAX_RUNS_AT_ONCE, max_queue_size: int = MAX_QUEUE_SIZE,
              cache_ttl_s: int = CACHE_TTL_S, clock=time.perf_counter) -> gr.Blocks:
    # Gradio deletes the frames, GIFs and PNGs it served once they are cache_ttl_s old; no analytics.
    delete_cache = (min(600, cache_ttl_s), cache_ttl_s)
    sessions_without_deep_links()
    delete_cut_off_uploads()
    with gr.Blocks(title="MNIST diffusion", delete_cache=delete_cache, analytics_enabled=False) as app:
        context = Context(pipe, app.GRADIO_CACHE, clock)
        gr.HTML('<a class="skip-link" href="#">Skip to the controls</a>', js_on_load=None, padding=False, elem_id="skip")
        gr.Markdown("# Watch a digit emerge from noise\nA class-conditional diffusion model trained on MNIST. "
                    "Pick a digit and a guidance strength, press **Generate**, and watch the model denoise.")
        # "wrap": on a phone every tab keeps its visible label, instead of hiding in a "..." menu.
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Generate"):
                sampler, steps = generate.build(context)
            with gr.Tab("How guidance works"):
                guidance.build(context)
            with gr.Tab("Morph"):
                morph.build(context)
            with gr.Tab("Draw"):
                drawn = draw.build(context)
            with gr.Tab("Repair"):
                repair.build(context, drawn)
            with gr.Tab("Write a number"):
                write.build(context)
            forward.build(context)
            learned.build(context)
        app.load(partial(generate.step_slider, pipe=pipe), sampler, steps, queue=False, show_progress="hidden",
                 api_visibility="private")
        tools.register(context, Editing(context))
    refuse_malformed_values(app)
    app.queue(max_size=max_queue_size, default_concurrency_limit=max_runs_at_once)
    return app
