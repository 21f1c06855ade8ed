"""MNIST, as whole tensors: 60,000 + 10,000 digits fit in memory many times over."""

import math
import os
from pathlib import Path

import numpy as np
import torch

# Each split's images and labels, in torchvision's layout: ROOT/MNIST/raw/NAME.
SPLITS = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def default_data_dir() -> str:
    """$MNIST_ROOT if set, else data/ (torchvision downloads MNIST there when it is missing)."""
    return os.environ.get("MNIST_ROOT", "data")


def load_mnist(root: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the training or test split, read from
    root/MNIST/raw; torchvision downloads the files there first if they are missing."""
    images, labels = (Path(root) / "MNIST" / "raw" / name for name in SPLITS[train])
    if not (images.exists() and labels.exists()):
        download_mnist(root)
    return torch.from_numpy(read_idx(images).copy()), torch.from_numpy(read_idx(labels).astype(np.int64))


def read_idx(path: Path) -> np.ndarray:
    """An array of bytes stored as MNIST stores them (the IDX format): two zero bytes, 8 (unsigned
    bytes), the number of dimensions, each dimension's length as a big-endian int32, the bytes.
    Read directly: torchvision's reader would cost its 2.5 s import in every run that reads MNIST."""
    data = path.read_bytes()
    dims = data[3] if len(data) > 3 and data[:3] == b"\0\0\x08" else 0
    header = 4 + 4 * dims
    shape = tuple(int(n) for n in np.frombuffer(data, ">i4", dims, 4)) if len(data) >= header else ()
    if not dims or len(data) != header + math.prod(shape):
        raise ValueError(f"{path} is not an MNIST file (the IDX format, of bytes) or is cut short: "
                         "remove it to download MNIST again, or pass --data-dir")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def download_mnist(root: str) -> None:
    """MNIST into root/MNIST/raw, by torchvision; one line of error if it cannot."""
    from torchvision.datasets import MNIST  # imported here: only a download needs torchvision

    try:
        MNIST(root, download=True)
    except Exception as e:  # torchvision raises several kinds when the download fails
        reason = " ".join(str(e).split())  # one line: torchvision's message lists each mirror on a line of its own
        raise FileNotFoundError(f"MNIST is not in {root!r} and could not be downloaded there ({reason}); "
                                "pass --data-dir or set MNIST_ROOT to a folder that holds MNIST/raw") from None


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [-1, 1], the range the model works in."""
    return images.float().unsqueeze(1) / 127.5 - 1
