"""Many requests, one model: threads that sample at the same time share the model's forward passes.

A server answers each request in a thread of its own, and each request's sampler calls the model
once a step. On a CPU a forward pass of one or two images leaves much of the cores' work undone:
per image, ten digits cost about a third of what one does (`python -m diffusion.bench`; the
docs/serving.md has the design and the figures).
`SharedModel` stands in for the model:

    shared = SharedModel(model)
    eps = shared(x, t, labels)        # from any thread, exactly as model(x, t, labels)
    eps = shared(x, t, labels, scales)  # a student's guided prediction, as model(x, t, labels, scales)

Each call waits in a queue; one model thread takes every call waiting when it comes free, runs
them as one batch of up to max_batch_size images, and hands each caller its own rows. So requests
that arrive together are computed together, whatever their digits, samplers, step counts,
timesteps or guidance; a request that arrives while a batch runs joins the next one, one forward
pass later. A caller that stops calling (a request stopped or abandoned) simply drops out. The
network computes each image independently of the others in its batch (unet.Linear and
unet.PointwiseConv), so a request gets exactly the images it gets alone.

`RecentForwardPasses` stands in for a model too, and gives a forward pass it made recently again
from memory: for live mode, where a change of guidance leaves the first steps as they were.

Threads and cores. Only the model thread computes on several cores (all torch found): every
other thread is set to one (torch.set_num_threads(1)) when a SharedModel starts. Two threads that
each keep a team of compute threads make both slow (here 2.2x, as the OpenMP runtime stops its
threads' fast waiting once they outnumber the cores). And on Linux a caller's thread (not the
main thread, whose priority the processes it starts inherit) steps back (a lower scheduling
priority, CALLER_NICENESS) so that its other work, pictures, GIFs and the web server's, runs on
what the model's compute threads leave rather than stall them: with thirty requests at once this
took the slowest from 2.8 s to 2.4 s here.
"""

import hashlib
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

CORES = torch.get_num_threads()  # the compute threads torch gives a thread: one per core
CALLER_NICENESS = 10  # a caller thread's scheduling priority on Linux (0 is the usual, 19 the lowest)
MAX_BATCH_SIZE = 24  # images a forward pass: past about ten the time per image hardly falls, while each
# image more holds 1.6 MB of activations (100 users at once grew the server by 39 MB less than at 48)


@dataclass
class Call:
    """One caller's forward pass, waiting for the model thread."""

    x: torch.Tensor
    t: torch.Tensor
    labels: torch.Tensor
    guidance: torch.Tensor | None  # a student's guidance scales (unet.UNet.forward); None: 1, or a teacher
    done: threading.Event = field(default_factory=threading.Event)
    eps: torch.Tensor | None = None
    error: Exception | None = None


class SharedModel:
    def __init__(self, model: torch.nn.Module, max_batch_size: int = MAX_BATCH_SIZE):
        self.model = model
        self.max_batch_size = max_batch_size
        self.waiting: list[Call] = []
        self.changed = threading.Condition()
        self.forward_passes = 0  # counted, so that tests can see that calls share them
        self.closed = False
        started = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(started,), name="model", daemon=True)
        self.thread.start()
        started.wait()
        torch.set_num_threads(1)  # this thread, and threads that start torch work later: see the module's notes

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                 guidance: torch.Tensor | None = None) -> torch.Tensor:
        """The model's noise prediction for x at timesteps t (one per image) and class labels (and for
        a student, guidance scales)."""
        # On Linux a thread has a priority of its own; it is never raised again, which needs rights. The
        # main thread keeps its own: processes it starts later would inherit the lower one.
        if sys.platform == "linux" and threading.current_thread() is not threading.main_thread():
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, max(CALLER_NICENESS, os.getpriority(os.PRIO_PROCESS, me)))
        call = Call(x, t, labels, guidance)
        with self.changed:
            if self.closed:
                raise RuntimeError("this SharedModel is closed")
            self.waiting.append(call)
            self.changed.notify()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.eps

    def serve(self, started: threading.Event) -> None:
        """The model thread: until closed, take the calls waiting and run them as one batch."""
        torch.set_num_threads(CORES)
        torch.get_num_threads()  # torch applies a thread's count at its first use: now, before __init__ sets 1
        started.set()
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.waiting or self.closed)
                if not self.waiting:
                    return
                batch = self.next_batch()
            self.run(batch)

    def next_batch(self) -> list[Call]:
        """The calls waiting longest, as many as fit in max_batch_size images (at least one)."""
        batch, size = [], 0
        while self.waiting and (not batch or size + len(self.waiting[0].x) <= self.max_batch_size):
            batch.append(self.waiting.pop(0))
            size += len(batch[-1].x)
        return batch

    @torch.inference_mode()
    def run(self, batch: list[Call]) -> None:
        try:
            guidance = None if all(call.guidance is None for call in batch) else torch.cat(
                [torch.ones(len(call.x), device=call.x.device) if call.guidance is None else call.guidance for call in batch])
            eps = self.model(torch.cat([call.x for call in batch]), torch.cat([call.t for call in batch]),
                             torch.cat([call.labels for call in batch]), guidance)
            for call, rows in zip(batch, eps.split([len(call.x) for call in batch])):
                call.eps = rows
        except Exception as e:  # noqa: BLE001 - each caller gets the error, as if it had called the model itself
            for call in batch:
                call.error = e
        self.forward_passes += 1
        for call in batch:
            call.done.set()

    def close(self) -> None:
        """Answer the calls already waiting, then end the model thread."""
        with self.changed:
            self.closed = True
            self.changed.notify()
        self.thread.join()


class RecentForwardPasses:
    """A denoiser that answers a forward pass it made recently from memory, without the model.

    Live mode recomputes the final image at each change of a setting, and a change of guidance
    leaves the first steps as they were: the steps before the guidance interval do not use the
    scale, so from the same noise they see the same x_t, and the first guided step's two
    predictions (with and without the digit) are the same too. Those forward passes, three of
    the default's nine, come from here. An answer is reused only for the same images, timesteps
    and labels, bit for bit, and the network gives an image the same answer whatever its batch
    (see the module's notes), so the final image is the one the model makes without this."""

    def __init__(self, denoiser, remembered: int = 64):
        self.denoiser = denoiser
        self.remembered = remembered
        self.answers: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # least recently used first
        self.lock = threading.Lock()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                 guidance: torch.Tensor | None = None) -> torch.Tensor:
        key = (tuple(x.shape), hashlib.blake2b(x.detach().cpu().numpy().tobytes()).digest(),
               tuple(t.tolist()), tuple(labels.tolist()), None if guidance is None else tuple(guidance.tolist()))
        with self.lock:
            if key in self.answers:
                self.answers.move_to_end(key)
                return self.answers[key].clone()
        eps = self.denoiser(x, t, labels, guidance)
        with self.lock:
            self.answers[key] = eps.clone()
            while len(self.answers) > self.remembered:
                self.answers.popitem(last=False)
        return eps
