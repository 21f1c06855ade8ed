"""Many requests, one model: threads that sample at the same time share the model's forward passes.

A server answers each request in a thread of its own, and each request's sampler calls the model
once a step. On a CPU a forward pass of one or two images leaves most of the cores' work undone:
here a batch of ten costs about 2.5x less per image than a batch of one (python /tmp/bs.py... see
the README's "Serving many"). `SharedModel` stands in for the model:

    shared = SharedModel(model)
    eps = shared(x, t, labels)        # from any thread, exactly as model(x, t, labels)

Each call waits in a queue; one model thread takes every call waiting when it comes free, runs
them as one batch of up to max_batch_size images, and hands each caller its own rows. So requests
that arrive together are computed together, whatever their digits, samplers, step counts,
timesteps or guidance; a request that arrives while a batch runs joins the next one, one forward
pass later. A caller that stops calling (a request stopped or abandoned) simply drops out.

Batched convolutions may round differently from a batch of one, so a request's images can differ
from the same request run alone in the last bits (at most 1 grey level in the tests here).

Only the model thread runs the network, on all the cores torch was given; every thread started
after a SharedModel runs torch on one core. Two threads that each keep a team of compute threads
on one machine's cores make both slow: with a second team alive, this model's forward passes took
2.2x as long here, as the OpenMP runtime stops its threads' fast waiting when they outnumber the
cores. The other threads' torch work (a sampler's arithmetic, turning samples into pictures) is
small and loses little on one core.
"""

import threading
from dataclasses import dataclass, field

import torch

MAX_BATCH_SIZE = 48  # images a forward pass: past about ten the time per image hardly falls, and memory grows


@dataclass
class Call:
    """One caller's forward pass, waiting for the model thread."""

    x: torch.Tensor
    t: torch.Tensor
    labels: torch.Tensor
    done: threading.Event = field(default_factory=threading.Event)
    eps: torch.Tensor | None = None
    error: Exception | None = None


class SharedModel:
    def __init__(self, model: torch.nn.Module, max_batch_size: int = MAX_BATCH_SIZE):
        self.model = model
        self.max_batch_size = max_batch_size
        self.waiting: list[Call] = []
        self.changed = threading.Condition()
        self.forward_passes = 0  # counted, so that tests can see calls share them
        self.closed = False
        started = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(torch.get_num_threads(), started), name="model",
                                       daemon=True)
        self.thread.start()
        started.wait()
        torch.set_num_threads(1)  # for every thread that starts torch work from now on (see the module's notes)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The model's noise prediction for x at timesteps t (one per image) and class labels."""
        call = Call(x, t, labels)
        with self.changed:
            if self.closed:
                raise RuntimeError("this SharedModel is closed")
            self.waiting.append(call)
            self.changed.notify()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.eps

    def serve(self, num_threads: int, started: threading.Event) -> None:
        """The model thread: until closed, take the calls waiting (at least one) and run them as one batch."""
        torch.set_num_threads(num_threads)  # this thread keeps them; see __init__
        started.set()
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.waiting or self.closed)
                if self.closed and not self.waiting:
                    return
                batch, size = [], 0
                while self.waiting and (not batch or size + len(self.waiting[0].x) <= self.max_batch_size):
                    batch.append(self.waiting.pop(0))
                    size += len(batch[-1].x)
            self.run(batch)

    def close(self) -> None:
        """Answer the calls already waiting, then end the model thread."""
        with self.changed:
            self.closed = True
            self.changed.notify()
        self.thread.join()

    @torch.inference_mode()
    def run(self, batch: list[Call]) -> None:
        try:
            eps = self.model(torch.cat([call.x for call in batch]), torch.cat([call.t for call in batch]),
                             torch.cat([call.labels for call in batch]))
            for call, rows in zip(batch, eps.split([len(call.x) for call in batch])):
                call.eps = rows
        except Exception as e:  # noqa: BLE001 - each caller gets the error, as if it had called the model itself
            for call in batch:
                call.error = e
        self.forward_passes += 1
        for call in batch:
            call.done.set()
