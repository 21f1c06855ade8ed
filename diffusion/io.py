"""Files: atomic writes, and safetensors with JSON metadata (no pickle anywhere)."""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

# The shipped weights: a wheel carries them inside the package; a checkout (and an editable
# install of it) has them in weights/ beside the package.
_PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = _PACKAGE_DIR / "weights" if (_PACKAGE_DIR / "weights").is_dir() else _PACKAGE_DIR.parent / "weights"


class WeightsError(Exception):
    """A weights file that is missing, damaged or does not fit the model: the message says which."""


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename,
    so a crash or a full disk never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        # The permissions a plain open() would give, not mkstemp's 0600; set after writing,
        # since a writer may replace the file (safetensors does).
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Save tensors with metadata; each metadata value is stored as JSON text."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={key: json.dumps(value) for key, value in metadata.items()})


def load_safetensors(path: str | os.PathLike, required_metadata: tuple[str, ...] = (),
                     missing_hint: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """Load tensors (on the CPU) and decoded metadata, or raise WeightsError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file{missing_hint}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        metadata = {key: json.loads(value) for key, value in raw_metadata.items()}
    except (SafetensorError, json.JSONDecodeError, OSError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file, truncated or corrupt ({e})") from None
    missing = [key for key in required_metadata if key not in metadata]
    if missing:
        raise WeightsError(f"{path}: incompatible file, its metadata lacks {', '.join(missing)}")
    return tensors, metadata


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """load_state_dict, with a WeightsError naming the file when tensors do not fit the module."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise WeightsError(f"{path}: incompatible weights, they do not fit the model ({detail})") from None
