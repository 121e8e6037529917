"""The environment a run measured on: device, library versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from freezebench import __version__

_PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "peft", "accelerate",
             "scikit-learn", "numpy")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model() or platform.processor() or platform.machine() or "cpu"


def _cpu_model() -> str | None:
    """The CPU's model name on Linux (platform.processor() is empty there)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return None
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else None


def _git(*args: str) -> str | None:
    """Output of a git command in the freezebench checkout; None outside one (or without git)."""
    source = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(source), *args],
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def git_commit() -> str | None:
    """The commit of the freezebench checkout, when it runs from one."""
    out = _git("rev-parse", "HEAD")
    return out.strip() or None if out is not None else None


def git_dirty() -> bool | None:
    """Whether tracked files of the checkout differ from its commit (then the commit alone does
    not reproduce the code that ran); None outside a checkout."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    return bool(out.strip()) if out is not None else None


def environment(device: torch.device) -> dict:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "device": device.type,
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "freezebench": __version__,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        **accelerator(),
        **versions,
    }


def accelerator() -> dict:
    """What a GPU user needs to reproduce: CUDA and cuDNN versions, the driver, how many GPUs
    (None on a machine without CUDA)."""
    if not torch.cuda.is_available():
        return {"cuda": None, "cudnn": None, "nvidia_driver": None, "gpu_count": 0}
    from torch.utils import collect_env

    return {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "nvidia_driver": collect_env.get_nvidia_driver_version(collect_env.run),
            "gpu_count": torch.cuda.device_count()}
