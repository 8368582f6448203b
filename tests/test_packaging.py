"""Packaging: declared dependencies match the imports (tools/check_deps.py), every
package ships a ``py.typed`` marker, and pyproject.toml is the one version source."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
CHECK_DEPS = REPO / "tools" / "check_deps.py"
EXAMPLE = REPO / "examples" / "segal-mcdropout"


def _check_deps(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK_DEPS), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_declared_dependencies_match_imports() -> None:
    done = _check_deps()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dependencies match the imports of segal_core, plugins" in done.stdout


def test_example_plugin_dependencies_match_imports() -> None:
    done = _check_deps("--pyproject", EXAMPLE / "pyproject.toml", EXAMPLE / "src")
    assert done.returncode == 0, done.stdout + done.stderr


def _project(root: Path, dependencies: list[str], code: str) -> Path:
    """A generated project: pyproject.toml and a package ``mypkg`` under ``src/``."""
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "mypkg"
        version = "1.0"
        dependencies = [{deps}]

        [project.optional-dependencies]
        test = ["pytest>=7"]
        """))
    package = root / "src" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(code)
    (package / "helpers.py").write_text("import json\nfrom . import other\nfrom mypkg import x\n")
    return root


# Installed in every environment that runs these tests (pyproject's dependencies).
CODE = """\
from __future__ import annotations
import os.path
import numpy as np
from PIL import Image
from click.testing import CliRunner
"""


def test_check_deps_passes_on_a_matching_tree(tmp_path: Path) -> None:
    root = _project(tmp_path, ["numpy>=1.24", "Pillow[extra] >=9 ; python_version>'3'", "click"], CODE)
    done = _check_deps("--pyproject", root / "pyproject.toml", root / "src", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_deps_fails_on_missing_and_unused(tmp_path: Path) -> None:
    code = CODE + "def later():\n    import importlib\n    return importlib.import_module('tqdm.auto')\n"
    root = _project(tmp_path, ["numpy", "pillow", "matplotlib>=3"], code)
    done = _check_deps("--pyproject", root / "pyproject.toml", root / "src", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "imported but not in [project] dependencies: click (src/mypkg/__init__.py:5)" in out
    assert "imported but not in [project] dependencies: tqdm (src/mypkg/__init__.py:8)" in out
    assert "in [project] dependencies but never imported: matplotlib" in out
    # stdlib, relative and own-package imports, and declared ones, are not reported
    assert len(out.splitlines()) == 3, out


def test_check_deps_fails_on_a_module_nothing_provides(tmp_path: Path) -> None:
    root = _project(tmp_path, ["numpy"], "import numpy\nimport no_such_module_anywhere.sub\n")
    done = _check_deps("--pyproject", root / "pyproject.toml", root / "src", cwd=tmp_path)
    assert done.returncode == 1
    assert "no installed distribution provides it: no_such_module_anywhere" in done.stdout


def test_check_deps_cannot_check_without_pyproject(tmp_path: Path) -> None:
    done = _check_deps("--pyproject", tmp_path / "pyproject.toml", tmp_path)
    assert done.returncode == 2
    assert "no such file or folder" in done.stderr


def test_check_deps_names_a_file_that_does_not_parse(tmp_path: Path) -> None:
    root = _project(tmp_path, [], "def broken(:\n")
    done = _check_deps("--pyproject", root / "pyproject.toml", root / "src", cwd=tmp_path)
    assert done.returncode == 2
    assert "src/mypkg/__init__.py:1: " in done.stderr


# -- py.typed ------------------------------------------------------------------------


def _packages() -> list[Path]:
    """Every top-level package this repository ships: segal_core, each built-in plugin,
    and the example plugin's package."""
    roots = [REPO / "plugins", EXAMPLE / "src"]
    found = [REPO / "segal_core"]
    found += [p for root in roots for p in sorted(root.iterdir()) if (p / "__init__.py").is_file()]
    return found


def test_every_package_has_py_typed() -> None:
    packages = _packages()
    assert len(packages) >= 10  # segal_core, 8 built-in plugins, the example
    missing = [str(p.relative_to(REPO)) for p in packages if not (p / "py.typed").is_file()]
    assert not missing, f"no py.typed in: {', '.join(missing)}"


@pytest.mark.parametrize("pyproject", [REPO / "pyproject.toml", EXAMPLE / "pyproject.toml"],
                         ids=["segal", "segal-mcdropout"])
def test_py_typed_is_package_data(pyproject: Path) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    shipped = {name for name, files in config.items() if "py.typed" in files}
    assert "*" in shipped or {p.name for p in _packages() if p.is_relative_to(pyproject.parent)} <= shipped


def test_pyproject_is_the_one_version_source() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    import segal_core

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    # The installed metadata comes from pyproject.toml (reinstall after changing it).
    assert metadata.version("segal") == declared
    assert segal_core.__version__ == declared
