"""Tiny, fast settings for end-to-end runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from segal_core.config import RunConfig

TINY_DATA = {"n_train": "16", "n_val": "4", "n_test": "4", "size": "32"}
TINY_ARGS = [
    "--dataset", "synthetic",
    *[a for k, v in TINY_DATA.items() for a in ("--dataset-opt", f"{k}={v}")],
    "--encoder", "tu-test_resnet", "--epochs", "1", "--min-steps", "0", "--batch-size", "4",
    "--seed-ratio", "0.25", "--query-size", "4", "--device", "cpu", "--no-progress",
]


def tiny_config(out: Path, **kw: Any) -> RunConfig:
    base: dict[str, Any] = dict(
        dataset="synthetic", dataset_options=dict(TINY_DATA), seed_ratio=0.25, query_size=4, device="cpu",
        progress=False, out=str(out),
        model_options={"encoder": "tu-test_resnet", "epochs": 1, "min_steps": 0, "batch_size": 4},
    )
    if kw.get("model", "unet") != "unet":  # another model plugin: none of the smp settings
        base["model_options"] = {}
    base["model_options"].update(kw.pop("model_options", {}))
    base.update(kw)
    return RunConfig(**base)


def history(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def segal_process(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "segal_core", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **kw.pop("env", {})}, **kw)
