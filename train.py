"""Train the class-conditional U-Net on MNIST and write weights/<name>.safetensors.

    python train.py                                   # the shipped model's settings
    python train.py --max-steps 200 --subset 2000     # a quick try on the CPU
    torchrun --nproc_per_node=2 train.py ...          # data-parallel over 2 processes (DDP)
    python train.py --distill-from weights/mnist-diffusion.safetensors --name mnist-student
                                                      # guidance distilled into a student

The run folder (runs/<name>/) holds a checkpoint, a sample grid per epoch, and the run's progress
as it goes (diffusion/progress.py): loss.csv, loss.svg and progress.gif, the same ten digits at
sample points from step 0 on. Running
the same command again continues exactly where an interrupted run stopped; Ctrl-C
(or SIGTERM) finishes the current step and saves a checkpoint first.
"""

import copy
import dataclasses
import functools
import math
import os
import platform
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from diffusion import cli
from diffusion.data import default_data_dir, load_mnist, to_model_range
from diffusion.io import load_safetensors, save_safetensors
from diffusion.media import sample_grid, save_png, to_uint8
from diffusion.pipeline import Pipeline, SamplingConfig, save_weights
from diffusion.progress import TrainingLog, snapshot_path
from diffusion.schedule import NoiseSchedule, ScheduleConfig, denoising_loss, distillation_loss
from diffusion.unet import UNet, UNetConfig

# Arguments that do not change the trained weights; a resumed run may set them differently.
RESUMABLE_ARGS_MAY_DIFFER = {"data_dir", "run_dir", "out", "checkpoint_every", "compile", "snapshots"}


def parse_args(argv=None):
    p = cli.ArgumentParser(prog="train.py", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=default_data_dir(), help="MNIST folder (default: $MNIST_ROOT or data/)")
    p.add_argument("--name", default="mnist-diffusion", help="names the run folder and the weights file")
    p.add_argument("--run-dir", help="checkpoint and sample grids (default: runs/<name>)")
    p.add_argument("--out", help="weights file (default: weights/<name>.safetensors)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps instead")
    p.add_argument("--subset", type=int, help="train on the first N training digits only")
    p.add_argument("--batch-size", type=int, default=128, help="global batch, split across processes")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--ema-decay", type=float, default=0.9995)
    p.add_argument("--label-dropout", type=float, default=0.1, help="share of labels replaced by the null class")
    p.add_argument("--channels", default="32,64,128", help="U-Net channels per resolution")
    p.add_argument("--blocks-per-level", type=int, default=1)
    p.add_argument("--beta-schedule", choices=["linear", "cosine"], default="cosine")
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (also every epoch)")
    p.add_argument("--snapshots", action="store_true",
                   help="also keep the EMA weights at each sample point, float16, in runs/<name>/snapshots/")
    p.add_argument("--distill-from", metavar="WEIGHTS",
                   help="train a student of these weights that takes the guidance scale as an input "
                        "(their network, schedule and sampling settings; --channels, --blocks-per-level, "
                        "--beta-schedule and --timesteps are not used)")
    p.add_argument("--max-guidance", type=float, default=10.0, help="with --distill-from: the largest scale taught")
    args = p.parse_args(argv)
    args.run_dir = args.run_dir or f"runs/{args.name}"
    args.out = args.out or f"weights/{args.name}.safetensors"
    for name in ("epochs", "batch_size", "warmup_steps", "checkpoint_every", "blocks_per_level", "timesteps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_steps", "subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.label_dropout < 1:
        p.error("--label-dropout must be in [0, 1)")
    if not 0 < args.max_guidance <= 100:
        p.error("--max-guidance must be above 0 and at most 100")
    try:
        args.channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        p.error(f"--channels must be comma-separated integers, not {args.channels!r}")
    return args


def lr_at(step: int, args, total_steps: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    warmup = min(1.0, (step + 1) / args.warmup_steps)
    return args.lr * warmup * 0.5 * (1 + math.cos(math.pi * step / total_steps))


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's per-parameter state as flat named tensors, for safetensors."""
    return {f"optimizer.{index}.{key}": value
            for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state = {}
    for name, value in tensors.items():
        _, index, key = name.split(".")
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def save_checkpoint(path: Path, model, ema, optimizer, step: int, elapsed_s: float, args) -> None:
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()},
               **{f"ema.{k}": v for k, v in ema.state_dict().items()},
               **optimizer_tensors(optimizer)}
    save_safetensors(path, tensors, {"step": step, "elapsed_s": elapsed_s, "args": vars(args)})


def load_checkpoint(path: Path, model, ema, optimizer, args) -> tuple[int, float]:
    tensors, metadata = load_safetensors(path, ("step", "elapsed_s", "args"))
    saved_args = metadata["args"]
    differing = sorted(k for k, v in vars(args).items()
                       if k not in RESUMABLE_ARGS_MAY_DIFFER and saved_args.get(k) != (list(v) if isinstance(v, tuple) else v))
    if differing:
        raise ValueError(f"{path} is a run with other settings ({', '.join(differing)} differ): "
                         "use the same arguments to resume, or another --name / --run-dir to start afresh")
    for prefix, module in (("model.", model), ("ema.", ema)):
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    load_optimizer(optimizer, {k: v for k, v in tensors.items() if k.startswith("optimizer.")})
    return metadata["step"], metadata["elapsed_s"]


def save_sample_grid(ema: UNet, schedule: NoiseSchedule, path: Path) -> None:
    """Four samples of each digit from the EMA weights, with the default sampler settings."""
    pipeline = Pipeline(ema, schedule, SamplingConfig())
    images = pipeline.generate(pipeline.settings(list(range(10)), samples_per_digit=4))
    # Transposed so that each column is one digit.
    save_png(sample_grid(to_uint8(images), num_digits=10), path)


class StopRequest:
    """Turns Ctrl-C / SIGTERM into a flag the loop checks between steps, so no step is cut in half."""

    def __init__(self):
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request)

    def _request(self, signum, frame):
        self.requested = True


def processes() -> int:
    """How many processes train together: torchrun says so in WORLD_SIZE; 1 without it."""
    return int(os.environ.get("WORLD_SIZE", 1))


def start_processes() -> tuple[int, int, int, torch.device]:
    """(rank, local rank, world size, device) of this process; with several (torchrun), their group started."""
    world_size = processes()
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return rank, local_rank, world_size, device


@functools.lru_cache(maxsize=1)
def epoch_order(seed: int, epoch: int, count: int, device: torch.device) -> torch.Tensor:
    """The order of the training images in an epoch: it depends on (seed, epoch) alone, so resuming replays it."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed + epoch)).to(device)


def training_step(loss_of, forward, model: UNet, ema: UNet, optimizer, x0: torch.Tensor, y: torch.Tensor,
                  generator: torch.Generator, step: int, total_steps: int, args) -> torch.Tensor:
    """One step on the batch (x0, y): the loss (loss_of, see loss_function), clipped gradients, AdamW
    at the step's learning rate, then the EMA of the weights. Returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, args, total_steps)
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=args.amp and x0.device.type == "cuda"):
        loss = loss_of(forward, x0, y, generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    optimizer.step()
    # EMA of the weights, with a warmup so that short runs are not dominated by the initial weights.
    decay = min(args.ema_decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    return loss


def everyone_stops(stop: StopRequest, device: torch.device) -> bool:
    """Whether to stop now: asked in any process, so that every process stops at the same step."""
    if not dist.is_initialized():
        return stop.requested
    flag = torch.tensor([float(stop.requested)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def training_data(args, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The training digits (the first --subset of them) and their labels on the device, and the
    steps in an epoch."""
    images, labels = load_mnist(args.data_dir, train=True)
    images, labels = images[:args.subset or None].to(device), labels[:args.subset or None].to(device)
    steps_per_epoch = len(images) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} training images are fewer than one batch of {args.batch_size}")
    return images, labels, steps_per_epoch


def new_model(args, device: torch.device):
    """(schedule config, schedule, model, its EMA, optimizer, teacher), freshly initialised from
    --seed, the same initial weights in every process; with --distill-from, the student starts as
    its teacher (whose network is kept, not trained) with a guidance input that adds nothing yet."""
    torch.manual_seed(args.seed)
    teacher = Pipeline.load(args.distill_from, device=device) if args.distill_from else None
    if teacher:
        unet_config = dataclasses.replace(teacher.model.config, guidance_input=args.max_guidance)
        schedule_config = teacher.schedule.config
    else:
        unet_config = UNetConfig(channels=args.channels, blocks_per_level=args.blocks_per_level)
        schedule_config = ScheduleConfig(num_timesteps=args.timesteps, beta_schedule=args.beta_schedule)
    schedule, model = NoiseSchedule(schedule_config), UNet(unet_config).to(device)
    if teacher:
        new = model.load_state_dict(teacher.model.state_dict(), strict=False).missing_keys
        assert all(name.startswith("guidance_mlp.") for name in new), new
        teacher.model.requires_grad_(False)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return schedule_config, schedule, model, ema, optimizer, teacher


def loss_function(args, schedule: NoiseSchedule, null_label: int, teacher: Pipeline | None):
    """loss_of(forward, x0, labels, generator): the denoising loss, or with a teacher the distillation loss."""
    if teacher is None:
        return lambda forward, x0, y, generator: denoising_loss(forward, schedule, x0, y, generator,
                                                                args.label_dropout, null_label)
    return lambda forward, x0, y, generator: distillation_loss(forward, teacher.model, schedule, x0, y, generator,
                                                               args.label_dropout, null_label, args.max_guidance)


def train(args) -> None:
    rank, local_rank, world_size, device = start_processes()
    if args.batch_size % world_size:
        raise ValueError(f"--batch-size {args.batch_size} does not divide among {world_size} processes")
    is_main, distributed = rank == 0, world_size > 1
    run_dir, checkpoint_path = Path(args.run_dir), Path(args.run_dir) / "checkpoint.safetensors"
    images, labels, steps_per_epoch = training_data(args, device)
    total_steps, per_process_batch = args.max_steps or args.epochs * steps_per_epoch, args.batch_size // world_size
    schedule_config, schedule, model, ema, optimizer, teacher = new_model(args, device)
    loss_of = loss_function(args, schedule, model.config.null_label, teacher)
    step, elapsed_s = load_checkpoint(checkpoint_path, model, ema, optimizer, args) if checkpoint_path.exists() else (0, 0.0)
    if is_main:
        print(f"U-Net: {sum(p.numel() for p in model.parameters()):,} parameters; {len(images):,} digits; "
              f"device {device} x {world_size}; step {step} of {total_steps}"
              + (f" (resumed from {checkpoint_path})" if step else ""))

    forward = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) if distributed else model
    if args.compile and device.type == "cuda":
        forward = torch.compile(forward)
    stop, generator = StopRequest(), torch.Generator(device)
    progress = tqdm(total=total_steps, initial=step, disable=not is_main, dynamic_ncols=True)
    log = TrainingLog(run_dir, total_steps, step) if is_main else None
    if log and step == 0:
        log.sample(0, ema, schedule)  # the untrained model's digits: where learning starts
        if args.snapshots:
            save_snapshot(ema, schedule_config, run_dir, 0, None, elapsed_s, device)
    started = time.perf_counter()
    while step < total_steps:
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        start = batch_in_epoch * args.batch_size + rank * per_process_batch
        batch = epoch_order(args.seed, epoch, len(images), device)[start:start + per_process_batch]
        # The step's randomness depends on (seed, step, rank) alone: an exact resume needs no RNG state.
        generator.manual_seed(args.seed * 1_000_003 + step * 1_009 + rank)
        step_started = time.perf_counter()
        loss = training_step(loss_of, forward, model, ema, optimizer, to_model_range(images[batch]), labels[batch],
                             generator, step, total_steps, args)
        step += 1
        if log:
            show_progress(log, progress, step, loss.item(), lr_at(step - 1, args, total_steps),
                          args.batch_size / (time.perf_counter() - step_started), epoch, ema, schedule)
            if args.snapshots and step in log.points:
                save_snapshot(ema, schedule_config, run_dir, step, log.rows[-1]["smoothed_loss"],
                              elapsed_s + time.perf_counter() - started, device)
        end_of_epoch, stop_now = step % steps_per_epoch == 0, everyone_stops(stop, device)
        if is_main and (stop_now or end_of_epoch or step % args.checkpoint_every == 0 or step == total_steps):
            save_checkpoint(checkpoint_path, model, ema, optimizer, step, elapsed_s + time.perf_counter() - started, args)
        if is_main and (end_of_epoch or step == total_steps):
            save_sample_grid(ema, schedule, run_dir / f"samples_epoch{epoch + 1:03d}.png")
        if stop_now:
            stop_here(progress, log, f"stopped at step {step} of {total_steps}; checkpoint in {checkpoint_path}; "
                                     "run the same command to continue")
    progress.close()
    if log:
        log.close()
    finish(args, model, ema, schedule_config, teacher.sampling_config if teacher else SamplingConfig(), step,
           steps_per_epoch, len(images), world_size, device, elapsed_s + time.perf_counter() - started)


def stop_here(progress: tqdm, log: TrainingLog | None, message: str) -> None:
    """Ctrl-C or SIGTERM between two steps: the bar and the loss history closed, the message said
    (by the main process, which has the log), and exit status 130 as for an interrupted command."""
    progress.close()
    if log:
        log.close()
        print(message)
    sys.exit(130)


def show_progress(log: TrainingLog, progress: tqdm, step: int, loss: float, learning_rate: float,
                  images_per_s: float, epoch: int, ema: UNet, schedule: NoiseSchedule) -> None:
    """After a step, in the main process: its row of the loss history, the bar, and at a sample point
    the progress pictures and the loss plot."""
    log.record(step, loss, learning_rate, images_per_s)
    progress.update(1)
    if step % 20 == 0:
        progress.set_postfix(epoch=epoch, loss=f"{log.rows[-1]['smoothed_loss']:.4f}", img_per_s=f"{images_per_s:.0f}")
    if step in log.points:
        log.sample(step, ema, schedule)


def finish(args, model: UNet, ema: UNet, schedule_config: ScheduleConfig, sampling_config: SamplingConfig,
           step: int, steps_per_epoch: int, num_images: int, world_size: int, device: torch.device,
           elapsed_s: float) -> None:
    """After the last step: replicas checked equal, the weights written, the process group ended."""
    distributed = world_size > 1
    if distributed:
        check_replicas_identical(model, device, dist.get_rank() == 0)
    if not distributed or dist.get_rank() == 0:
        write_weights(args, ema, schedule_config, sampling_config, step, steps_per_epoch, num_images, device, elapsed_s)
    if distributed:
        dist.destroy_process_group()


def check_replicas_identical(model: torch.nn.Module, device: torch.device, is_main: bool) -> None:
    """DDP keeps every process's weights equal; check it rather than trust it."""
    mine = torch.cat([p.detach().flatten() for p in model.parameters()])
    reference = mine.clone()
    dist.broadcast(reference, src=0)
    difference = (mine - reference).abs().max().reshape(1).to(device)
    dist.all_reduce(difference, op=dist.ReduceOp.MAX)
    if is_main:
        print(f"replicas identical across {dist.get_world_size()} processes: max |difference| = {difference.item():g}")
    if difference.item() != 0:
        raise RuntimeError("DDP replicas diverged")


def save_snapshot(ema: UNet, schedule_config: ScheduleConfig, run_dir: Path, step: int, loss: float | None,
                  wall_s: float, device: torch.device) -> None:
    """The EMA weights at a sample point, in float16 (half the size; loaded as float32), a weights
    file of its own whose metadata says the step, the smoothed loss there (None before the first
    step), the command, and the training time so far on what hardware."""
    training = {"command": command(), "step": step, "loss": loss, "wall_time_s": round(wall_s, 1),
                "hardware": hardware(device), "snapshot": True}
    save_weights(snapshot_path(step, run_dir / "snapshots"), ema, schedule_config, SamplingConfig(), training,
                 dtype=torch.float16)


def command() -> str:
    """The command line that started this run."""
    launcher = f"torchrun --nproc_per_node={processes()} " if processes() > 1 else "python "
    return launcher + " ".join(["train.py"] + sys.argv[1:])


def hardware(device: torch.device) -> str:
    """What the run trains on: "2 x NVIDIA H100", "1 x x86_64 CPU, 2 threads"."""
    if device.type == "cuda":
        return f"{processes()} x {torch.cuda.get_device_name(device)}"
    return f"{processes()} x {platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def write_weights(args, ema, schedule_config, sampling_config, step, steps_per_epoch, num_images, device,
                  wall_s) -> None:
    training = {
        "command": command(),
        "steps": step,
        "epochs": round(step / steps_per_epoch, 2),
        "batch_size": args.batch_size,
        "data": f"MNIST training set, {num_images:,} digits",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "wall_time_s": round(wall_s, 1),
        "hardware": hardware(device),
        "torch": torch.__version__,
        "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
    }
    save_weights(args.out, ema, schedule_config, sampling_config, training)
    print(f"wrote {args.out} ({step} steps, {wall_s / 60:.1f} min)")


if __name__ == "__main__":
    cli.run(lambda: train(parse_args()), prog="train.py")
