"""The "How it learned" tab: a recorded training run's snapshots, from the first steps to a model
that writes good digits. Pick one and watch a model at that point denoise; beside it the loss
curve with the snapshot marked, and the ten digits at every snapshot."""

import threading
from pathlib import Path

import gradio as gr
from gradio import FileData

from diffusion import Pipeline, WeightsError, media, progress
from diffusion.classifier import class_probabilities
from diffusion.settings import is_integer

from .editing import last
from .page import FIGURES_TEMPLATE, picture_template
from .shared import (DIGIT_CHOICES, MODEL_EVENT, PAGE_EVENT, ROW_SIZE, Context, Refusal, announce, digits_of,
                     errors_shown_on_the_page, figure, live_region, picture, seed_box, show_on_phones)


CHART_WIDTH, CHART_HEIGHT = 360, 220  # the loss chart's drawing, px: the page scales it to fit


class Learned:
    """The handlers, with the snapshots loaded once each, when first asked for."""

    def __init__(self, context: Context, folder: str | Path = progress.RECORDED_RUN):
        self.context, self.folder = context, Path(folder)
        self.steps = progress.snapshot_steps(self.folder)
        self.history = progress.read_rows(self.folder / "loss.csv")
        self.pipes: dict[int, Pipeline] = {}
        self.rows: tuple[list[dict], str] | None = None  # every_snapshot's, once made
        self.loading = threading.RLock()  # make_rows loads snapshots while holding it

    def snapshot(self, step: int) -> Pipeline:
        """The snapshot at `step`, loaded on first use; a missing or damaged one says so in one line."""
        if not is_integer(step):
            raise Refusal(f"step must be a whole number, one of the snapshots' ({', '.join(map(str, self.steps))}), "
                           f"not {step!r}")
        with self.loading:
            if step not in self.pipes:
                try:
                    self.pipes[step] = progress.load_snapshot(step, self.folder, self.context.pipe.device)
                except WeightsError as e:
                    raise Refusal(str(e)) from None
            return self.pipes[step]

    def recorded(self) -> str:
        """How the run was made, as its last snapshot says: "5,000 steps on 1 x x86_64 CPU, 2 threads (76 min)"."""
        try:
            training = progress.snapshot_training(self.steps[-1], self.folder)
        except WeightsError:
            return f"{self.steps[-1]:,} steps"
        return f"{self.steps[-1]:,} steps on {training['hardware']} ({training['wall_time_s'] / 60:.0f} min)"

    def loss_at(self, step: int) -> float | None:
        """The run's smoothed loss at `step`; None without its loss.csv."""
        return progress.smoothed_at(self.history, step) if self.history else None

    def label(self, step: int) -> str:
        loss = self.loss_at(step)
        return f"step {step:,}" + ("" if loss is None else f" · loss {loss:.3f}")

    def chart(self, step: int) -> str:
        """The recorded run's loss curve, the snapshot at `step` marked on it."""
        if not self.history:
            return "The run's loss.csv is missing."
        return progress.loss_chart(self.history, [step], width=CHART_WIDTH, height=CHART_HEIGHT)

    def every_snapshot(self) -> tuple[list[dict], str]:
        """(figures, status): 0 to 9 as each snapshot writes them (seed 0); a snapshot that cannot be
        loaded is left out and named in the status. Made once, at the tab's first opening."""
        with self.loading:
            if self.rows is None:
                self.rows = self.make_rows()
            return self.rows

    def make_rows(self) -> tuple[list[dict], str]:
        figures, failed = [], []
        for step in self.steps:
            try:
                pipe = self.snapshot(step)
            except gr.Error as e:
                failed.append(e.message)
                continue
            digits = progress.ten_digits(pipe)
            read = " ".join(map(str, class_probabilities(self.context.classifier, digits).argmax(1).tolist()))
            figures.append(figure(self.label(step), media.grid(media.to_uint8(digits), columns=10), ROW_SIZE,
                                  alt=f"0 to 9 as the model at step {step:,} writes them (seed 0); the classifier "
                                      f"reads them as {read}"))
        return figures, " ".join(failed)

    def generate(self, step: int, digit: str, seed: int):
        """Stream (picture, status, GIF path, details): the denoising of `digit` by the snapshot at
        `step`, then the whole of it looping."""
        pipe, digits = self.snapshot(step), digits_of(digit)
        with errors_shown_on_the_page():
            settings = pipe.settings(digits, seed)
        frames, what = [], f"{settings.description} by the model at step {step:,}"
        for sample_step, step_frames in media.denoising_animation(pipe.sample_steps(settings), len(digits)):
            frames += step_frames
            yield picture(frames[-1:], f"{what}: x_t above the model's guess of x_0, step {sample_step.index + 1}"), \
                f"Step {sample_step.index + 1} of {settings.steps}", None, None
        read = class_probabilities(self.context.classifier, sample_step.x).argmax(1).tolist()
        name = f"mnist-learning_step-{step}_{settings.file_stem.removeprefix('mnist-')}"
        gif_path, _ = self.context.save_downloads(name, frames)
        details = {"step": step, "loss": self.loss_at(step), "digits": digits, "read_as": read}
        yield (picture(frames, f"the denoising of {what}, looping"),
               f"{what}: the classifier reads it as {' '.join(map(str, read))}.", gif_path, details)

    def show(self, step: int, digit: str, seed: int):
        """Generate on the page: generate's updates less the details."""
        for update in self.generate(step, digit, seed):
            yield update[:3]

    def api_generate(self, step: int, digit: int = 3, seed: int = 0) -> tuple[FileData, dict]:
        """Generate `digit` (0-9) with the recorded run's snapshot at `step` (see /snapshots). Returns
        the denoising (GIF) and the details: the step, its smoothed loss, the digits and what the
        classifier reads each as."""
        *_, gif, details = last(self.generate(step, str(digit), seed))
        return gif, details

    def api_snapshots(self) -> list[dict]:
        """The recorded run's snapshots: each one's step and smoothed training loss there."""
        return [{"step": step, "loss": self.loss_at(step)} for step in self.steps]


def build(context: Context, folder: str | Path = progress.RECORDED_RUN) -> None:
    handlers = Learned(context, folder)
    with gr.Tab("How it learned") as tab:
        if not handlers.steps:
            gr.Markdown(f"The recorded run's snapshots are missing from {folder}: `git checkout -- {folder}` "
                        "restores them, or docs/training.md (The recorded run) says how to make them.")
            return
        layout(handlers, tab)


def layout(handlers: Learned, tab: gr.Tab) -> None:
    first = handlers.steps[0]
    gr.Markdown(f"A diffusion model learning to write digits. These snapshots are of a **recorded training run**, "
                f"{handlers.recorded()}, with the shipped model's architecture and recipe: not the shipped model's "
                "own run, which was longer, on a GPU. Pick a snapshot and a digit and press **Generate** to watch a "
                "model at that point denoise.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            step = gr.Radio([(handlers.label(s), s) for s in handlers.steps], value=first, label="Snapshot",
                            elem_id="snapshot")
            digit = gr.Radio(DIGIT_CHOICES, value="3", label="Digit", elem_id="learned-digit")
            seed = seed_box(0, elem_id="learned-seed")
            generate = gr.Button("Generate", variant="primary", elem_id="learned-generate")
        with gr.Column(scale=2):
            status = gr.Markdown(label="status", show_label=False, elem_id="learned-status")
            live = gr.HTML(html_template=picture_template("Pick a snapshot and press Generate."), label="picture",
                           show_label=False, elem_id="learned-picture", min_height=200)
            gif = gr.File(label="Animation (GIF)", interactive=False, elem_id="learned-gif", elem_classes="download")
            gr.Markdown("## The loss as it trained\nThe training loss against the step (faint), its moving average "
                        "(bold), and the snapshot picked (dot).")
            chart = gr.HTML(handlers.chart(first), label="loss", show_label=False, elem_id="learned-loss")
    gr.Markdown("## The ten digits at every snapshot\nThe same starting noise (seed 0) at every snapshot.")
    figures = gr.HTML(html_template=FIGURES_TEMPLATE, label="figures", show_label=False, elem_id="learned-figures")
    announcement = live_region("learned")
    step.change(handlers.chart, step, chart, **PAGE_EVENT)
    tab.select(handlers.every_snapshot, None, [figures, status], api_visibility="private", **MODEL_EVENT)
    generating = generate.click(handlers.show, [step, digit, seed], [live, status, gif],
                                js=show_on_phones("learned-status"), api_visibility="private", **MODEL_EVENT)
    announce(generating, status, announcement)
    gr.api(handlers.api_generate, api_name="snapshot_generate", concurrency_id="model")
    gr.api(handlers.api_snapshots, api_name="snapshots")
