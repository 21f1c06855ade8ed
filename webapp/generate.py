"""The Generate tab: pick a digit and a guidance strength, watch it emerge from noise, keep the GIF."""

import random
from functools import partial

import gradio as gr

from diffusion import STEP_RANGES, Pipeline, Settings, media
from diffusion.classifier import StepReadings

from . import live
from .page import READINGS_TEMPLATE, picture_template
from .shared import (DIGIT_CHOICES, LIMITS, MODEL_EVENT, PAGE_EVENT, SAMPLER_CHOICES, Context, announce, digits_of,
                     errors_shown_on_the_page, guided_where, hand_focus, live_region, picture, seed_box,
                     show_on_phones)

# The live preview while computing (the finished animation shows every frame): up to 10 updates a
# second for a run alone; runs at the same time share 20 a second, as each update costs the server
# what the model needs (a hall of 100 at once: finished p95 13.6-16.0 s at 60 a second, 11.1 s at 20).
PREVIEW_UPDATES_PER_S = 10
PREVIEW_UPDATES_PER_S_SHARED = 20


class Run:
    """One Generate as the page follows it: its settings, the animation's frames so far, what the
    classifier reads the first sample of each digit as, and whether Stop was pressed."""

    def __init__(self):
        self.settings: Settings | None = None
        self.frames, self.step, self.elapsed_s = [], 0, 0.0
        self.sample = None  # the latest step's sample: the final image once all steps are done
        self.readings: StepReadings | None = None
        self.stop_requested = False


class Generate:
    """The tab's handlers. The run each browser session follows, from Generate's click to its end,
    is kept in `runs` (rather than in a gr.State, whose heartbeat connection holds up the server's
    shutdown), so that Stop can reach it."""

    def __init__(self, context: Context):
        self.context = context
        self.runs: dict[str | None, Run] = {}

    def start(self, request: gr.Request | None = None):
        """Generate pressed: a fresh Run for this session to follow, and Stop becomes the live button."""
        self.runs[request and request.session_hash] = Run()
        return "Waiting for the model…", gr.Button(interactive=False), gr.Button(interactive=True, variant="stop")

    def stop(self, request: gr.Request | None = None) -> gr.Button:
        """Stop pressed: the session's run ends after its current step, and its own stream shows
        the animation so far (a separate answer could arrive before the stream's last update)."""
        run = self.runs.get(request and request.session_hash)
        if run is not None:
            run.stop_requested = True
        return gr.Button(interactive=False, variant="secondary")

    def generate(self, digit: str, guidance_scale: float, sampler: str, steps: int, seed: int | None = None,
                 samples_per_digit: int = 1, request: gr.Request | None = None):
        """Stream (picture, status, GIF, PNG, seed used, probabilities): a live preview while the
        digits emerge, then the whole process as a looping animation, its GIF and the final PNG.
        No seed (None) picks a random one; a seed given is always the one used."""
        session = request and request.session_hash
        run = self.runs.get(session)
        if run is None or run.settings is not None:  # not a fresh Run from Generate's click (an API call)
            run = self.runs[session] = Run()
        try:
            with errors_shown_on_the_page():
                run.settings = self.context.pipe.settings(
                    digits_of(digit), random.randrange(2**32) if seed is None else seed, guidance_scale, sampler,
                    steps, samples_per_digit, limits=LIMITS)
            yield from self.follow(run)
        finally:
            if self.runs.get(session) is run:
                del self.runs[session]

    def follow(self, run: Run):
        """generate's work, with the Run that Stop can reach: previews paced by preview_interval."""
        settings, seed = run.settings, run.settings.seed
        if run.stop_requested:  # Stop was pressed while this request waited for its turn
            yield gr.skip(), "Stopped before it started.", gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        clock = self.context.clock
        started = last_preview = clock()
        num_digits = len(settings.digits)
        first_of_each_digit = [d * settings.samples_per_digit for d in range(num_digits)]
        run.readings = StepReadings(self.context.classifier)
        for step, frames in media.denoising_animation(self.context.pipe.sample_steps(settings), num_digits,
                                                      settings.samples_per_digit):
            run.frames += frames
            if frames:  # the steps the animation shows: every step of a run of up to MAX_FRAMES steps
                run.readings.add(step.index + 1, step.x0[first_of_each_digit])
            run.step, run.sample, run.elapsed_s = step.index + 1, step.x, clock() - started
            now = clock()
            preview_due = run.step < settings.steps and (run.step == 1 or now - last_preview >= self.preview_interval())
            if not (run.stop_requested or preview_due):
                continue
            # This step's sample as a frame: the animation's last one when it shows the step.
            latest = run.frames[-1] if frames else media.denoising_frames([step.x], step.x0, num_digits)[0]
            if run.stop_requested:
                if not frames:  # the animation ends where the run stopped
                    run.frames.append(latest)
                break
            last_preview = now
            progress = f"Step {run.step} of {settings.steps} · {run.elapsed_s:.1f} s"
            shown = picture([latest], f"{settings.description}: x_t above the model's guess of x_0, "
                                      f"step {run.step} of {settings.steps}")
            yield shown, progress, None, None, seed, self.readings(run)
        if run.step < settings.steps:
            status = (f"Stopped at step {run.step} of {settings.steps} ({run.elapsed_s:.1f} s); "
                      "the animation shows the steps made.")
        else:
            status = f"{settings.description}: made in {run.elapsed_s:.2f} s on {self.context.pipe.device.type}"
        yield *self.result(run, status), seed, self.readings(run, finished=True)

    def preview_interval(self) -> float:
        """Seconds between a run's preview updates: the runs under way share the server's budget."""
        return max(1 / PREVIEW_UPDATES_PER_S, len(self.runs) / PREVIEW_UPDATES_PER_S_SHARED)

    def readings(self, run: Run, finished: bool = False) -> dict:
        """What the classifier reads each digit's guess as (media.reading_panels)."""
        settings = run.settings
        return media.reading_panels(run.readings.step_numbers, run.readings.probabilities(), list(settings.digits),
                                    run.step, settings.steps, finished, settings.samples_per_digit > 1)

    def result(self, run: Run, status: str) -> tuple[dict, str, str, str]:
        """(picture, status, GIF path, PNG path) for a finished or stopped run: the animation of
        its frames plays in the page and downloads as the same GIF; the PNG is its latest sample
        (the final image, unless stopped)."""
        settings, frames = run.settings, list(run.frames)
        stopped = "" if run.step == settings.steps else f"_stopped-at-step-{run.step}"
        final = media.sample_grid(media.to_uint8(run.sample), len(settings.digits))
        gif_path, png_path = self.context.save_downloads(settings.file_stem + stopped, frames, final)
        with self.context.encoding:
            shown = picture(frames, f"the denoising of {settings.description}: x_t above the model's guess of "
                                    f"x_0 at each step, looping")
        return shown, status, gif_path, png_path


def step_slider(sampler: str, pipe: Pipeline) -> gr.Slider:
    """The step slider for a sampler: its range, starting at the usual count (the weights' for their sampler)."""
    fewest, most, usual = STEP_RANGES[sampler]
    if sampler == pipe.sampling_config.sampler:
        usual = pipe.sampling_config.steps
    return gr.Slider(minimum=fewest, maximum=most, value=usual)


def seed_for(randomize_seed: bool, seed_used: int | None) -> gr.Number:
    """The seed box is shown only while Random seed is off, and then starts at the seed of the
    picture on the page, so that Generate makes that picture again. While hidden it is empty:
    no seed, so each run picks one."""
    if randomize_seed:
        return gr.Number(visible=False, value=None)
    return gr.Number(visible=True, value=0 if seed_used is None else seed_used)


def idle():
    return gr.Button(interactive=True), gr.Button(interactive=False, variant="secondary")


def not_generated():
    """A run that failed or was turned away (the app busy): Generate works again, and the status
    no longer says it is waiting. Gradio's message at the top of the page says what went wrong,
    for a few seconds."""
    return "Nothing was generated. If the app was busy, try again in a few seconds.", *idle()


def settings_column(pipe: Pipeline) -> dict:
    """The left-hand column: the request's settings, Generate and Stop."""
    recommended = pipe.sampling_config
    widgets = {"digit": gr.Radio(DIGIT_CHOICES, value="3", label="Digit", elem_id="digit")}
    widgets["guidance_scale"] = gr.Slider(  # a student follows scales up to what its largest input acts as
        0, min(LIMITS.max_guidance_scale, pipe.max_guidance_scale), value=recommended.guidance_scale, step=0.05,
        label="Guidance scale",
        info="0 ignores the digit, 1 is plain conditional, higher pushes harder towards it. "
             + guided_where(pipe, "Above 1, it"), elem_id="guidance")
    widgets["sampler"] = gr.Radio(SAMPLER_CHOICES, value=recommended.sampler, label="Sampler", elem_id="sampler")
    # Built with the full range so API callers may use any sampler's range; the page narrows it to
    # the chosen sampler's range on load and on every change.
    widgets["steps"] = gr.Slider(1, pipe.schedule.num_timesteps, value=recommended.steps, step=1, precision=0,
                                 label="Steps", elem_id="steps")
    widgets["samples_per_digit"] = gr.Slider(1, LIMITS.max_samples_per_digit, value=1, step=1, precision=0,
                                             label="Samples per digit", elem_id="samples")
    # Only the page has this box: it shows or hides the seed, and a run with no seed picks one,
    # so an API caller who passes a seed always gets that seed.
    widgets["randomize_seed"] = gr.Checkbox(True, label="Random seed", elem_id="random-seed",
                                            info="Each run picks a new seed, shown above the picture. Untick to "
                                                 "choose one: it starts at the picture's, to make that picture again.")
    widgets["seed"] = seed_box(None, visible=False, elem_id="seed")
    with gr.Row():
        widgets["generate"] = gr.Button("Generate", variant="primary", elem_id="generate")
        widgets["stop"] = gr.Button("Stop", variant="secondary", interactive=False, elem_id="stop")
    widgets["live_mode"] = live.switch()
    gr.Markdown(f"One request may take up to {LIMITS.max_image_steps:,} image-steps (digits x samples x steps).")
    return widgets


def results_column() -> dict:
    """The right-hand column: status, the live picture beside what the classifier reads, downloads."""
    # Labels name the API's return values; the page shows its own captions instead.
    widgets = {"status": gr.Markdown(label="status", show_label=False, elem_id="status")}
    # The picture travels inline, as a data URL: each update shows at once, with no second request
    # that the next update could overtake (a gr.Image would serve it as a file).
    with gr.Row(elem_id="picture-row"):  # the readings beside the picture where they fit, else below
        widgets["live"] = gr.HTML(html_template=picture_template("Press Generate to watch a digit emerge from noise."),
                                  label="picture", show_label=False, elem_id="denoising", min_height=200)
        widgets["readings"] = gr.HTML(html_template=READINGS_TEMPLATE, label="probabilities", show_label=False,
                                      elem_id="probabilities")
    gr.Markdown("When a run ends, the picture plays the whole process, looping. Frames between two steps follow "
                "that step's own prediction (no extra model calls). The classifier reads each step's guess; the "
                "first guesses, from almost pure noise, are rough, and it tends to call them an 8.")
    with gr.Row():
        widgets["gif"] = gr.File(label="Animation (GIF)", elem_id="gif")
        widgets["png"] = gr.File(label="Final image (PNG)", elem_id="png")
    widgets["seed_used"] = gr.Number(None, precision=0, label="seed", visible=False)
    widgets["announcement"] = live_region("generate")
    return widgets


def build(context: Context) -> tuple[gr.Radio, gr.Slider]:
    """The tab's layout and events; returns (sampler, steps), whose range the page sets on load."""
    handlers = Generate(context)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            w = settings_column(context.pipe)
        with gr.Column(scale=2):
            w |= results_column()
    w["sampler"].change(partial(step_slider, pipe=context.pipe), w["sampler"], w["steps"], **PAGE_EVENT)
    w["randomize_seed"].change(seed_for, [w["randomize_seed"], w["seed_used"]], w["seed"], **PAGE_EVENT)
    started = w["generate"].click(handlers.start, None, [w["status"], w["generate"], w["stop"]],
                                  js=show_on_phones("status"), **PAGE_EVENT)
    inputs = [w[name] for name in ("digit", "guidance_scale", "sampler", "steps", "seed", "samples_per_digit")]
    outputs = [w[name] for name in ("live", "status", "gif", "png", "seed_used", "readings")]
    generating = started.then(handlers.generate, inputs, outputs, api_name="generate", **MODEL_EVENT)
    hand_focus(started, "generate", "stop")  # Stop is the live button while a run goes
    hand_focus(generating.then(idle, None, [w["generate"], w["stop"]], **PAGE_EVENT), "stop", "generate")
    failed = generating.failure(not_generated, None, [w["status"], w["generate"], w["stop"]], **PAGE_EVENT)
    for event in (started, generating, failed):  # .then: success only
        announce(event, w["status"], w["announcement"])
    w["stop"].click(handlers.stop, None, w["stop"], **PAGE_EVENT)
    live.wire(context, w)
    return w["sampler"], w["steps"]
