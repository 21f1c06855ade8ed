"""Inside the model: the U-Net drawn from its own config, and what it sees at each resolution.

    python -m diffusion.inside assets/unet.svg            # the shipped weights' U-Net as SVG

    svg = diagram(pipe.model.config)                       # the U-Net as SVG, for a page or the docs
    maps = feature_maps(pipe.model, step.x_t, step.timestep, labels)   # {"down 28x28": (N, H, W), ...}

`feature_maps` runs the model once on a step's x_t and keeps, at every level going down, the middle
and every level going up, its strongest channel: the one whose activation varies most across the
picture. At little noise the full-resolution levels trace the strokes; at much noise only the
coarse levels hold the digit's shape.
"""

import torch
from torch import nn

from . import cli
from .io import atomic_write, load_safetensors
from .pipeline import DEFAULT_WEIGHTS
from .unet import UNet, UNetConfig

BOX_WIDTH, BOX_HEIGHT, GAP = 150, 44, 26  # the diagram's boxes, px


def levels(config: UNetConfig) -> list[tuple[int, int]]:
    """(side in pixels, channels) of each resolution, from the image's down."""
    return [(config.image_size // 2**level, channels) for level, channels in enumerate(config.channels)]


def box(x: float, y: float, lines: list[str], fill: str = "none", width: float = BOX_WIDTH) -> str:
    text = "".join(f'<text x="{x + width / 2}" y="{y + 17 + 15 * i}" text-anchor="middle" font-size="12" '
                   f'fill="currentColor">{line}</text>' for i, line in enumerate(lines))
    return (f'<rect x="{x}" y="{y}" width="{width}" height="{BOX_HEIGHT}" rx="6" fill="{fill}" '
            f'stroke="currentColor"/>{text}')


def arrow(x1: float, y1: float, x2: float, y2: float, dashed: bool = False) -> str:
    dashes = ' stroke-dasharray="5 4"' if dashed else ""
    return (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="currentColor" marker-end="url(#head)"'
            f'{dashes}/>')


def diagram(config: UNetConfig, background: str | None = None) -> str:
    """The U-Net as SVG: the levels going down (left) and up (right) with their sides and channels,
    the skip connections across, attention at the lowest level, and the timestep and class
    embedding that enters every ResBlock. Drawn in the text's colour (currentColor) on a page; a
    file for anywhere takes a background (and is drawn in black)."""
    sizes = levels(config)
    n, blocks = len(sizes), config.blocks_per_level
    width, height = 2 * BOX_WIDTH + 3 * GAP + 120, (n + 1) * (BOX_HEIGHT + GAP) + 50
    left, right = GAP, width - BOX_WIDTH - GAP
    parts = []
    for level, (side, channels) in enumerate(sizes):
        y = 40 + level * (BOX_HEIGHT + GAP)
        parts.append(box(left, y, [f"{side}x{side}, {channels} channels", f"{blocks} ResBlock{'s' * (blocks > 1)}, down"]))
        parts.append(box(right, y, [f"{side}x{side}, {channels} channels", f"{blocks} ResBlock{'s' * (blocks > 1)}, up"]))
        parts.append(arrow(left + BOX_WIDTH, y + BOX_HEIGHT / 2, right, y + BOX_HEIGHT / 2, dashed=True))  # the skip
        if level < n - 1:
            parts.append(arrow(left + BOX_WIDTH / 2, y + BOX_HEIGHT, left + BOX_WIDTH / 2, y + BOX_HEIGHT + GAP))
            parts.append(arrow(right + BOX_WIDTH / 2, y + BOX_HEIGHT + GAP, right + BOX_WIDTH / 2, y + BOX_HEIGHT))
    side, channels = sizes[-1]
    y_mid = 40 + n * (BOX_HEIGHT + GAP)
    middle_width = BOX_WIDTH + 50
    middle = (width - middle_width) / 2
    parts.append(box(middle, y_mid, [f"{side}x{side}, {channels} channels", "ResBlock, attention, ResBlock"],
                     fill="rgba(194, 65, 12, 0.12)", width=middle_width))
    y_last = y_mid - GAP
    parts.append(arrow(left + BOX_WIDTH / 2, y_last, middle, y_mid + BOX_HEIGHT / 2))
    parts.append(arrow(middle + middle_width, y_mid + BOX_HEIGHT / 2, right + BOX_WIDTH / 2, y_last))
    parts.append(f'<text x="{left}" y="24" font-size="12" fill="currentColor">x_t ({config.image_size}x'
                 f'{config.image_size}) in</text><text x="{right}" y="24" font-size="12" fill="currentColor">'
                 f'predicted noise out</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="12" fill="currentColor">'
                 f'timestep t + class (0-{config.num_classes - 1}, or {config.null_label}: none) -> one '
                 f'{config.embedding_dim}-value embedding, into every ResBlock</text>')
    label = (f"the U-Net: going down {', '.join(f'{s}x{s} with {c} channels' for s, c in sizes)}; at {side}x{side} "
             f"self-attention; going up the same levels, each joined by a skip connection; the timestep and "
             f"the class enter every ResBlock")
    ground = "" if background is None else f'<rect width="{width}" height="{height}" fill="{background}"/>'
    colour = "" if background is None else ' color="black"'
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{label}"{colour}>{ground}<defs><marker id="head" viewBox="0 0 10 10" refX="9" '
            f'refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
            f'fill="currentColor"/></marker></defs>{"".join(parts)}</svg>')


@torch.inference_mode()
def feature_maps(model: UNet, x: torch.Tensor, timestep: int, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's activations at each level for inputs x (N, C, H, W) at `timestep`: for each of
    "down SxS", "middle SxS" and "up SxS", the channel whose activation has the largest standard
    deviation over the picture, (N, S, S), scaled to [0, 1] per image. (The mean over channels
    would blur what single channels pick out: at 28x28 it shows mostly the noise.)"""
    sides = [side for side, _ in levels(model.config)]
    watched: list[tuple[str, nn.Module]] = [(f"down {s}x{s}", blocks[-1]) for s, blocks in zip(sides, model.down)]
    watched.append((f"middle {sides[-1]}x{sides[-1]}", model.mid2))
    watched += [(f"up {s}x{s}", blocks[-1]) for s, blocks in reversed(list(zip(sides, model.up)))]
    activations, hooks = {}, []

    def keep(name: str, output: torch.Tensor) -> None:  # a hook that returns None leaves the output as it is
        activations.setdefault(name, output[:len(x)])  # a batch of one runs as two (see UNet.forward)

    for name, module in watched:
        hooks.append(module.register_forward_hook(lambda module, inputs, output, name=name: keep(name, output)))
    try:
        model(x, torch.full((len(x),), timestep, device=x.device), labels.to(x.device))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: strongest_channel(a).cpu() for name, a in activations.items()}


def strongest_channel(activations: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) -> (N, S, S): each image's channel of largest spread, scaled to [0, 1]."""
    channel = activations.flatten(2).std(2).argmax(1)
    strongest = activations[torch.arange(len(activations)), channel]
    low = strongest.flatten(1).min(1).values[:, None, None]
    high = strongest.flatten(1).max(1).values[:, None, None]
    return (strongest - low) / (high - low).clamp(min=1e-12)


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.inside", description="Draw a weights file's U-Net as SVG.")
    p.add_argument("out", type=cli.file_ending(".svg"), help="the SVG file to write")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    args = p.parse_args()
    _, metadata = load_safetensors(args.weights, ("unet_config",))
    with atomic_write(args.out) as tmp:
        tmp.write_text(diagram(UNetConfig(**metadata["unet_config"]), background="white"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.inside")
