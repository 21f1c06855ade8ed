"""A small MNIST classifier: the judge of evaluate.py (is it the digit asked for?), the feature
extractor of its Fréchet distance (penultimate layer, 128 features), and the reader that shows
what the model thinks a digit is while it emerges (class_probabilities of each step's x0).

    python -m diffusion.classifier --data-dir ../shared/data    # writes weights/mnist-classifier.safetensors
"""

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import cli
from .data import default_data_dir, load_mnist, to_model_range
from .io import WEIGHTS_DIR, load_safetensors, load_state, save_safetensors

DEFAULT_PATH = WEIGHTS_DIR / "mnist-classifier.safetensors"


class Classifier(nn.Module):
    feature_dim = 128

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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features of images (N, 1, 28, 28) in [-1, 1]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_classifier(path: str | Path = DEFAULT_PATH, device: str | torch.device = "cpu") -> Classifier:
    """The trained classifier, ready to read images (not to train): see for_reading."""
    tensors, _ = load_safetensors(path)
    model = Classifier()
    load_state(model, tensors, path)
    return for_reading(model.eval()).to(device, memory_format=torch.channels_last)


def for_reading(model: Classifier) -> Classifier:
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

    model.body, model.head = nn.Sequential(*fold(list(model.body))), nn.Sequential(*fold(list(model.head)))
    return model


@torch.inference_mode()
def predict(model: Classifier, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted digits (N,), features (N, 128)) for images (N, 1, 28, 28) in [-1, 1]."""
    device = next(model.parameters()).device
    digits, features = [], []
    for batch in images.split(batch_size):
        f = model.features(batch.to(device))
        features.append(f.cpu())
        digits.append(model.head(f).argmax(1).cpu())
    return torch.cat(digits), torch.cat(features)


@torch.inference_mode()
def class_probabilities(model: Classifier, images: torch.Tensor) -> torch.Tensor:
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

    def __init__(self, classifier: Classifier):
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


def train_classifier(data_dir: str, out: str, epochs: int, seed: int, device: torch.device,
                     subset: int | None = None) -> float:
    """Train on MNIST's training digits (the first `subset` only, if given), then measure on its
    10,000 test digits; writes the weights to `out` and returns the test accuracy."""
    torch.manual_seed(seed)
    images, labels = load_mnist(data_dir, train=True)
    images, labels = images[:subset], labels[:subset]
    test_images, test_labels = load_mnist(data_dir, train=False)
    x, y = to_model_range(images), labels
    model = Classifier().to(device)
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
            loss = F.cross_entropy(model(random_shift(x[batch], generator).to(device)), y[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        accuracy = (predict(model, to_model_range(test_images))[0] == test_labels).float().mean().item()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, test accuracy {accuracy:.2%}")
    save_safetensors(out, model.state_dict(), {
        "test_accuracy": accuracy, "epochs": epochs, "seed": seed,
        "command": f"python -m diffusion.classifier --epochs {epochs} --seed {seed}"
                   + (f" --subset {subset}" if subset else ""),
        "wall_time_s": round(time.perf_counter() - started, 1),
    })
    print(f"wrote {out}: test accuracy {accuracy:.2%} on the 10,000 MNIST test digits")
    return accuracy


def main() -> None:
    p = cli.ArgumentParser(prog="python -m diffusion.classifier", description="Train the evaluation classifier.")
    p.add_argument("--data-dir", default=default_data_dir(), help="MNIST folder (default: $MNIST_ROOT or data/)")
    p.add_argument("--out", default=str(DEFAULT_PATH))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, help="train on the first N training digits only (a quick try)")
    args = p.parse_args()
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.subset is not None and args.subset < 128:
        p.error("--subset must be at least 128, one batch")
    train_classifier(args.data_dir, args.out, args.epochs, args.seed,
                     torch.device("cuda" if torch.cuda.is_available() else "cpu"), args.subset)


if __name__ == "__main__":
    cli.run(main, prog="python -m diffusion.classifier")
