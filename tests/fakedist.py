"""Build fake installed distributions (a dist-info folder with entry_points.txt) so
plugins load through real entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                      version: str = "1.0") -> Path:
    """Write ``modules`` (name -> source) and a ``DIST-VERSION.dist-info`` with the
    ``segal`` entry points under ``root``; put ``root`` on ``sys.path`` to install it."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[segal]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


STRATEGY_PLUGIN = '''
import torch
from segal_core import Strategy, hookimpl

class Constant(Strategy):
    name = "{name}"
    aliases = ("{alias}",)
    uses_model = False

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def score(self, ctx):
        return torch.full((len(ctx.pool),), self.value)

@hookimpl
def segal_register_strategies():
    return [Constant]
'''
