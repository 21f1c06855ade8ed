"""Requests sampled together through one SharedModel get exactly the images they get alone."""

import copy
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from diffusion import Pipeline
from diffusion.batching import CALLER_NICENESS, CORES, MAX_BATCH_SIZE, RecentForwardPasses, SharedModel

from .conftest import wait_until

# Requests as different as the app allows: digits, guidance (0 and 1 take one image a call, 1.5
# two; the recommended one, only inside its interval), samplers, step counts, seeds and samples per digit.
REQUESTS = [
    ([3], dict(seed=1)),
    ([7, 1], dict(seed=2, guidance_scale=3.0, sampler="ddim", steps=8)),
    ([0], dict(seed=3, guidance_scale=1.0, sampler="ddpm", steps=12)),
    ([5], dict(seed=4, guidance_scale=0.0, samples_per_digit=2)),
    ([9], dict(seed=5, steps=4)),
    ([4, 4, 2], dict(seed=6, guidance_scale=1.5, sampler="dpmpp", steps=6)),
]


@pytest.fixture
def restore_threads():
    """A SharedModel sets every other thread to one compute thread; the rest of the suite gets its count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class RecordingModel(torch.nn.Module):
    """Stands in for the network: records each forward pass's batch size and compute threads, and
    holds the first pass until the calls waiting bring the images of it and them to `hold_for_rows`,
    so that the rest must share the next one."""

    def __init__(self, model, shared_waiting: list | None = None, hold_for_rows: int = 0):
        super().__init__()
        self.model, self.passes, self.threads = model, [], []
        self.shared_waiting, self.hold_for_rows = shared_waiting, hold_for_rows

    def forward(self, x, t, labels, guidance=None):
        if not self.passes and self.hold_for_rows:
            wait_until(lambda: len(x) + sum(len(call.x) for call in self.shared_waiting) >= self.hold_for_rows,
                       f"{self.hold_for_rows} images asked for", poll_s=0.002)
        self.passes.append(len(x))
        self.threads.append(torch.get_num_threads())
        return self.model(x, t, labels, guidance)


def test_requests_sampled_together_get_exactly_their_images_alone(shipped_pipeline, restore_threads):
    alone, first_calls, passes_alone = {}, [], 0  # each one's images, and how many images its first call asks for
    for i, (digits, settings) in enumerate(REQUESTS):
        calls = []
        hook = shipped_pipeline.model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
        alone[i] = shipped_pipeline.generate(shipped_pipeline.settings(digits, **settings))
        hook.remove()
        first_calls.append(calls[0])
        passes_alone += len(calls)
    shared = Pipeline(shipped_pipeline.model, shipped_pipeline.schedule, shipped_pipeline.sampling_config, shared=True)
    recording = RecordingModel(shipped_pipeline.model, shared.denoiser.waiting, hold_for_rows=sum(first_calls))
    shared.denoiser.model = recording
    try:
        with ThreadPoolExecutor(len(REQUESTS)) as pool:
            together = dict(enumerate(pool.map(lambda request: shared.generate(shared.settings(request[0], **request[1])), REQUESTS)))
    finally:
        shared.denoiser.close()
    for i, (digits, settings) in enumerate(REQUESTS):
        assert torch.equal(together[i], alone[i]), f"request {digits} {settings} differs from its run alone"
    # The first pass held the others back: the next took all of their first calls at once (and maybe
    # the first caller's second, if it came quickly).
    assert recording.passes[0] + recording.passes[1] >= sum(first_calls)
    assert shared.denoiser.forward_passes < passes_alone, "the requests never shared a forward pass"


def test_only_the_model_thread_computes_on_several_cores_and_callers_step_back(restore_threads):
    model = RecordingModel(lambda x, t, labels, guidance: x)
    shared = SharedModel(model)
    x, t, labels = torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)

    def call_and_tell_priority():
        shared(x, t, labels)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    try:
        assert torch.get_num_threads() == 1, "the other threads compute on one core"
        with ThreadPoolExecutor(1) as pool:
            niceness = pool.submit(call_and_tell_priority).result(timeout=60)
        main_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert call_and_tell_priority() == main_niceness
    finally:
        shared.close()
    assert model.threads == [CORES, CORES], "the model thread computes on every core, for both calls"
    if sys.platform == "linux":
        assert niceness >= CALLER_NICENESS, "a caller's own work steps back for the model's compute threads"
        assert main_niceness < CALLER_NICENESS, "the main thread keeps its priority: its children inherit it"


def test_a_failing_forward_pass_fails_each_of_its_callers_and_the_next_is_served(restore_threads):
    failures = iter([RuntimeError("out of memory")])

    def model(x, t, labels, guidance=None):
        error = next(failures, None)
        if error:
            raise error
        return x + 1

    shared = SharedModel(model)
    x, t, labels = torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    with ThreadPoolExecutor(1) as caller:  # a caller steps back (see batching.py): not this test's own thread
        try:
            with pytest.raises(RuntimeError, match="out of memory"):
                caller.submit(shared, x, t, labels).result(timeout=60)
            assert torch.equal(caller.submit(shared, x, t, labels).result(timeout=60), x + 1)
        finally:
            shared.close()
        with pytest.raises(RuntimeError, match="closed"):
            caller.submit(shared, x, t, labels).result(timeout=60)


@pytest.mark.parametrize("threads", sorted({1, CORES}))
def test_an_image_is_computed_the_same_in_any_batch(shipped_pipeline, restore_threads, threads):
    """The network's rows do not depend on each other (unet.Linear and unet.PointwiseConv, and a lone
    image run as two), on one core or several: what lets a shared batch give each request its image alone.
    On one core the CPU's 1x1 convolution rounds a batch of 16 or more differently."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    n = MAX_BATCH_SIZE
    x = torch.randn(n, 1, 28, 28, generator=generator)
    t, labels = torch.randint(0, 1000, (n,), generator=generator), torch.randint(0, 11, (n,), generator=generator)
    model = shipped_pipeline.model
    with torch.inference_mode():
        one_by_one = torch.cat([model(x[i:i + 1], t[i:i + 1], labels[i:i + 1]) for i in range(n)])
        for size in (2, 3, 5, 6, 12, 16, n):
            in_batches = torch.cat([model(x[i:i + size], t[i:i + size], labels[i:i + size]) for i in range(0, n, size)])
            assert torch.equal(in_batches, one_by_one), f"batches of {size} round differently on {threads} threads"


def test_a_change_of_guidance_reuses_the_first_steps_and_makes_the_same_image(shipped_pipeline):
    """Live mode's pipeline: the steps before the guidance interval, and the first guided step's two
    predictions, do not depend on the scale, so a new scale computes only the rest, and every
    image is the one the model makes without reuse."""
    calls = []

    def counted(x, t, labels, guidance=None):
        calls.append(len(x))
        return shipped_pipeline.model(x, t, labels, guidance)

    plain = copy.copy(shipped_pipeline)
    plain.denoiser = counted
    reusing = plain.reusing_forward_passes()
    timesteps, high = plain.timesteps(9), plain.sampling_config.guidance_interval[1]
    reused = sum(1 for t in timesteps if t > high) + 1  # the first guided step's inputs are the scale's too
    assert 0 < reused < len(timesteps), "the default's guidance interval should leave steps before it"
    for scale, expected_calls in ((2.5, len(timesteps)), (3.0, len(timesteps) - reused), (2.5, 0)):
        settings = plain.settings([7], seed=11, guidance_scale=scale, steps=9)
        calls.clear()
        images = reusing.generate(settings)
        assert len(calls) == expected_calls, (scale, calls)
        assert torch.equal(images, plain.generate(settings)), f"guidance {scale}: not the image made without reuse"
    settings = plain.settings([7], seed=12, guidance_scale=3.0, steps=9)
    calls.clear()
    assert torch.equal(reusing.generate(settings), plain.generate(settings))
    assert len(calls) == 2 * len(timesteps), "a new seed shares no step: every one computed (and again without reuse)"


def test_reuse_remembers_only_the_latest_answers():
    """At most `remembered` answers are kept, the least recently used given up first."""
    made = []

    def model(x, t, labels, guidance=None):
        made.append(int(t[0]))
        return x * 2

    reusing = RecentForwardPasses(model, remembered=2)
    x, labels = torch.ones(1, 1, 2, 2), torch.tensor([3])
    for t in (1, 2, 1, 3, 2, 1):
        assert torch.equal(reusing(x, torch.tensor([t]), labels), x * 2)
    # 1 comes from memory; 3 pushes out 2, the least recently used; 2 then pushes out 1, and 1 out 3.
    assert made == [1, 2, 3, 2, 1]
    assert len(reusing.answers) == 2
