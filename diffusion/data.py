"""MNIST, as whole tensors: 60,000 + 10,000 digits fit in memory many times over."""

import os

import torch


def default_data_dir() -> str:
    """$MNIST_ROOT if set, else data/ (torchvision downloads MNIST there when it is missing)."""
    return os.environ.get("MNIST_ROOT", "data")


def load_mnist(root: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the training or test split."""
    from torchvision.datasets import (
        MNIST,  # imported here: only training and evaluation need torchvision
    )

    try:
        dataset = MNIST(root, train=train, download=True)
    except Exception as e:  # torchvision raises several kinds when files are missing and the download fails
        reason = " ".join(str(e).split())  # one line: torchvision's message lists each mirror on a line of its own
        raise FileNotFoundError(f"MNIST is not in {root!r} and could not be downloaded there ({reason}); "
                           "pass --data-dir or set MNIST_ROOT to a folder that holds MNIST/raw") from None
    return dataset.data, dataset.targets


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [-1, 1], the range the model works in."""
    return images.float().unsqueeze(1) / 127.5 - 1
