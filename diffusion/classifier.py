"""Small MNIST classifiers: the judges of evaluate.py (is it the digit asked for?), the feature
extractors of its Fréchet distances (penultimate layer, 128 features), and the reader that shows
what the model thinks a digit is while it emerges (class_probabilities of each step's x0).

Two of them, built and trained differently, so that a flaw one of them overlooks the other may see:
- "convnet" (weights/mnist-classifier.safetensors): plain convolutions, BatchNorm, max pooling,
  trained on digits shifted by up to 2 pixels. It is also the app's reader.
- "resnet" (weights/mnist-classifier-resnet.safetensors): residual blocks, GroupNorm, strided
  convolutions, global average pooling, trained on digits rotated, scaled and shifted, from another seed.

    python -m diffusion.classifier --data-dir ../shared/data                              # the convnet
    python -m diffusion.classifier --architecture resnet --seed 1 --epochs 6 --data-dir ../shared/data
"""

import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import cli
from .data import default_data_dir, load_mnist, to_model_range
from .io import WEIGHTS_DIR, WeightsError, load_safetensors, load_state, save_safetensors

DEFAULT_PATH = WEIGHTS_DIR / "mnist-classifier.safetensors"
RESNET_PATH = WEIGHTS_DIR / "mnist-classifier-resnet.safetensors"


class DigitClassifier(nn.Module):
    """What each classifier here is: a body that turns images (N, 1, 28, 28) in [-1, 1] into
    feature_dim features, and a head that reads those as the ten digits."""
    architecture: str
    feature_dim = 128
    body: nn.Module
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (N, feature_dim)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def for_reading(self) -> "DigitClassifier":
        """The same classifier, made faster to read with, where it can be (after eval())."""
        return self


class Classifier(DigitClassifier):
    """The convnet: two blocks of two 3x3 convolutions at 28 and 14 pixels, then one dense layer."""
    architecture = "convnet"

    def __init__(self):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),  # 28 -> 14
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, 10))

    def for_reading(self) -> "Classifier":
        """The same classifier with each BatchNorm folded into the convolution before it (in eval mode a
        BatchNorm is one fixed affine map per channel) and dropout, a no-op in eval mode, left out.
        One digit then takes 0.5 ms rather than 0.8 here (200 calls timed on one thread)."""
        def fold(layers: list[nn.Module]) -> list[nn.Module]:
            folded = []
            for layer in layers:
                if isinstance(layer, nn.BatchNorm2d):
                    folded[-1] = fuse_conv_bn_eval(folded[-1], layer)
                elif not isinstance(layer, nn.Dropout):
                    folded.append(layer)
            return folded

        self.body, self.head = nn.Sequential(*fold(list(self.body))), nn.Sequential(*fold(list(self.head)))
        return self


class ResidualBlock(nn.Module):
    """x + (conv, GroupNorm, ReLU, conv, GroupNorm)(x), then ReLU (He et al. 2016, with GroupNorm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.residual(x))


class ResidualClassifier(DigitClassifier):
    """The resnet: one convolution at 28 pixels, residual blocks at 14 and 7 after strided convolutions,
    and global average pooling: its 128 features are averages over the whole image, not one dense layer's.
    GroupNorm normalises each image by its own statistics: nothing to fold for reading."""
    architecture = "resnet"

    def __init__(self):
        super().__init__()

        def down(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.ReLU()]

        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.ReLU(),
            *down(32, 64), ResidualBlock(64),  # 28 -> 14
            *down(64, self.feature_dim), ResidualBlock(self.feature_dim),  # 14 -> 7
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.feature_dim, 10))


def load_classifier(path: str | Path = DEFAULT_PATH, device: str | torch.device = "cpu") -> DigitClassifier:
    """A trained classifier (the architecture its file names), ready to read images, not to train."""
    tensors, metadata = load_safetensors(path, ("architecture",))
    if metadata["architecture"] not in ARCHITECTURES:
        raise WeightsError(f"{path}: unknown classifier architecture {metadata['architecture']!r}")
    model = ARCHITECTURES[metadata["architecture"]].network()
    load_state(model, tensors, path)
    return model.eval().for_reading().to(device, memory_format=torch.channels_last)


@torch.inference_mode()
def predict(model: DigitClassifier, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted digits (N,), features (N, 128)) for images (N, 1, 28, 28) in [-1, 1]."""
    device = next(model.parameters()).device
    digits, features = [], []
    for batch in images.split(batch_size):
        f = model.features(batch.to(device))
        features.append(f.cpu())
        digits.append(model.head(f).argmax(1).cpu())
    return torch.cat(digits), torch.cat(features)


@torch.inference_mode()
def class_probabilities(model: DigitClassifier, images: torch.Tensor) -> torch.Tensor:
    """What the classifier reads images (N, 1, 28, 28) in [-1, 1] as: (N, 10) probabilities, on the CPU.

    Read from each denoising step's estimate of the clean image (Step.x0), it shows when the
    digit's class is decided: early, while late steps only add detail (docs/results.md, "When is the digit decided?").
    """
    device = next(model.parameters()).device
    return model(images.to(device, torch.float32)).softmax(1).cpu()


class StepReadings:
    """What the classifier reads a run's steps' x0 estimates as, read in batches: `add` each step's
    x0 as it comes (it only keeps it), and `probabilities()` reads all those added since its last
    call as one batch. Read one at a time as they came, they made the app's default stream 11%
    slower; read when the page is updated, about 5% (`python -m diffusion.bench`)."""

    def __init__(self, classifier: DigitClassifier):
        self.classifier = classifier
        self.step_numbers: list[int] = []
        self.unread: list[torch.Tensor] = []
        self.read: list[torch.Tensor] = []

    def add(self, step_number: int, x0: torch.Tensor) -> None:
        self.step_numbers.append(step_number)
        self.unread.append(x0)

    def probabilities(self) -> torch.Tensor:
        """(steps added, images, 10): each step's probabilities, in the order added."""
        if self.unread:
            batch = class_probabilities(self.classifier, torch.cat(self.unread))
            self.read.append(batch.unflatten(0, (len(self.unread), -1)))
            self.unread = []
        return torch.cat(self.read)


def first_passing(probabilities: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> list[int | None]:
    """For each image, the index of the first reading (of S readings (S, N, 10)) at which the
    probability of its label passes threshold; None where it never does."""
    of_label = probabilities[:, torch.arange(len(labels)), labels]  # (S, N)
    passed = of_label > threshold
    return [int(column.nonzero()[0]) if column.any() else None for column in passed.T]


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Augmentation: translate each image by up to max_shift pixels (zero padding is the background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 12, scale: float = 0.1,
                  shift: float = 2) -> torch.Tensor:
    """Augmentation: rotate each image by up to `degrees`, scale it by 1 +- `scale` and translate it by
    up to `shift` pixels, resampled bilinearly (the background, -1, fills what comes into view)."""
    n, _, h, w = x.shape
    angle, size, dx, dy = (torch.rand(4, n, generator=generator) * 2 - 1) * torch.tensor(
        [[math.radians(degrees)], [scale], [2 * shift / w], [2 * shift / h]])
    cos, sin = torch.cos(angle) / (1 + size), torch.sin(angle) / (1 + size)
    theta = torch.stack([torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False) - 1  # grid_sample fills with 0: shift the background there


class Architecture(NamedTuple):
    network: type[DigitClassifier]
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    default_path: Path


ARCHITECTURES = {network.architecture: Architecture(network, augment, path) for network, augment, path in (
    (Classifier, random_shift, DEFAULT_PATH), (ResidualClassifier, random_affine, RESNET_PATH))}


def train_classifier(data_dir: str, out: str, epochs: int, seed: int, device: torch.device,
                     subset: int | None = None, architecture: str = "convnet") -> float:
    """Train on MNIST's training digits (the first `subset` only, if given), then measure on its
    10,000 test digits; writes the weights to `out` and returns the test accuracy."""
    torch.manual_seed(seed)
    images, labels = load_mnist(data_dir, train=True)
    images, labels = images[:subset], labels[:subset]
    test_images, test_labels = load_mnist(data_dir, train=False)
    x, y = to_model_range(images), labels
    network, augment, _ = ARCHITECTURES[architecture]
    model = network().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = len(x) // 128
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        permutation = torch.randperm(len(x), generator=generator)
        for step in range(steps_per_epoch):
            batch = permutation[step * 128:(step + 1) * 128]
            loss = F.cross_entropy(model(augment(x[batch], generator).to(device)), y[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        accuracy = (predict(model, to_model_range(test_images))[0] == test_labels).float().mean().item()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, test accuracy {accuracy:.2%}")
    save_safetensors(out, model.state_dict(), {
        "architecture": architecture, "augmentation": augment.__name__,
        "test_accuracy": accuracy, "epochs": epochs, "seed": seed, "device": str(device),
        "command": f"python -m diffusion.classifier --architecture {architecture} --epochs {epochs} --seed {seed}"
                   + (f" --subset {subset}" if subset else ""),
        "wall_time_s": round(time.perf_counter() - started, 1),
    })
    print(f"wrote {out}: test accuracy {accuracy:.2%} on the 10,000 MNIST test digits")
    return accuracy


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.classifier", description="Train an evaluation classifier.")
    p.add_argument("--data-dir", default=default_data_dir(), help="MNIST folder (default: $MNIST_ROOT or data/)")
    p.add_argument("--architecture", choices=list(ARCHITECTURES), default="convnet")
    p.add_argument("--out", help="default: weights/mnist-classifier.safetensors (convnet), "
                                 "weights/mnist-classifier-resnet.safetensors (resnet)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, help="train on the first N training digits only (a quick try)")
    args = p.parse_args()
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.subset is not None and args.subset < 128:
        p.error("--subset must be at least 128, one batch")
    train_classifier(args.data_dir, args.out or str(ARCHITECTURES[args.architecture].default_path), args.epochs,
                     args.seed, torch.device("cuda" if torch.cuda.is_available() else "cpu"), args.subset, args.architecture)


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.classifier")
