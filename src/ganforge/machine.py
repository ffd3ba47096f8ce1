"""What a run ran on: CPU and GPU model, torch and Python versions, for config.json."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from .errors import GanforgeError


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``--device cuda`` fails on CPU-only hosts."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GanforgeError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it (Linux: /proc/cpuinfo), else the
    architecture; platform.processor() is empty on most Linux systems."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
                            "torch": torch.__version__, "python": platform.python_version(),
                            "os": f"{platform.system()} {platform.release()}"}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
