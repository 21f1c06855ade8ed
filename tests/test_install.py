"""Installed as a user installs it: `pip install -e .` (or `pip install .`) in a virtual
environment makes `diffusion` importable from any folder, its command-line tools run there and
find the shipped weights; requirements.txt lists what pyproject.toml does."""

import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def test_requirements_txt_lists_the_dependencies_of_pyproject_toml():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line] == dependencies


def readme_python_snippet() -> str:
    """The README's examples of the library from Python: the block that loads a Pipeline, then the
    one that reads its steps and morphs with it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return next(block for block in blocks if "Pipeline.load(" in block) + next(block for block in blocks if "morph(" in block)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["editable", "wheel"])
def test_after_pip_install_the_library_and_the_cli_work_from_any_folder(tmp_path, mode):
    # A fresh environment that sees this one's packages (torch, gradio: no 3 GB download) but
    # not the checkout; pip and setuptools come from this environment, so nothing is fetched.
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    target = ["-e", str(ROOT)] if mode == "editable" else [str(ROOT)]
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", *target],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)

    where = run("-c", "import diffusion; print(diffusion.__file__, diffusion.DEFAULT_WEIGHTS)")
    assert where.returncode == 0, where.stderr
    package, weights = where.stdout.split()
    inside = str(ROOT) if mode == "editable" else str(venv)
    assert package.startswith(inside) and weights.startswith(inside), where.stdout
    snippet = run("-c", readme_python_snippet())
    assert snippet.returncode == 0, snippet.stderr
    lines = snippet.stdout.splitlines()
    assert any(line.startswith("49 ") for line in lines)  # the last of 50 DDIM steps
    assert lines[-1] == "torch.Size([9, 1, 28, 28])", lines[-1]  # the morph's nine frames
    sample = run("-m", "diffusion.sample", "--digits", "7", "--grid", "x.png")
    assert sample.returncode == 0, sample.stderr
    assert (elsewhere / "x.png").is_file() and (elsewhere / "samples.npz").is_file()
