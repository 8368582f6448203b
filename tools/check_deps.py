#!/usr/bin/env python3
"""Compare a project's declared dependencies with what its code imports.

    python tools/check_deps.py            # this project: segal_core/ and plugins/
    python tools/check_deps.py --pyproject examples/segal-mcdropout/pyproject.toml \\
        examples/segal-mcdropout/src      # the example plugin package

Every ``.py`` file under the source folders is parsed (never imported). The top-level
name of each absolute import (and of ``importlib.import_module("x")`` /
``__import__("x")`` with a literal name) that is neither in the standard library nor
one of the project's own packages is mapped to the installed distribution that provides
it (``importlib.metadata.packages_distributions()``), and those distributions are
compared with ``[project] dependencies`` of the pyproject file.

Prints what is imported but not declared and what is declared but never imported, and
exits 1 if there is either; 0 when they agree; 2 when the check cannot run (no
pyproject, a file that does not parse). Run it in the environment the project is
installed in: the module-to-distribution map is read from the installed distributions.
Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors a copy of the same parser
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = ("segal_core", "plugins")

# Declared in [project] dependencies but not imported by the scanned code, on purpose.
# Each entry says why; delete it as soon as the reason is gone (the check prints a note
# when an entry has become unnecessary).
DECLARED_UNUSED_OK: dict[str, str] = {
    # Never imported by name: segal_core.prepare records its version in config.json when it
    # is installed (a dynamic __import__), and smp and timm import it. Declared so the
    # torch/torchvision pair is explicit, as .ci/run pins both.
    "torchvision": "version recorded by segal_core.prepare; required by smp and timm",
}

# Imported by the scanned code but deliberately not a runtime dependency: the import is
# lazy and only runs where that distribution is already present. It must still be
# declared in one of [project.optional-dependencies].
IMPORTED_OPTIONAL_OK: dict[str, str] = {
    # segal_core/testing.py (test helpers for plugin authors) imports pytest inside a
    # function that only runs during a pytest session; pytest is in the `test` extra.
    "pytest": "lazy import in segal_core/testing.py, used only under pytest",
    # plugins/segal_trackers imports mlflow inside --tracker mlflow's code only; the
    # `mlflow` extra installs it (mlflow-skinny: the client and local stores).
    "mlflow-skinny": "lazy import in plugins/segal_trackers, only with --tracker mlflow",
}


def normalize(name: str) -> str:
    """A distribution name in its PEP 503 normal form (``Pillow`` -> ``pillow``,
    ``huggingface_hub`` -> ``huggingface-hub``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement string."""
    match = _REQUIREMENT_NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


@dataclass(frozen=True)
class Import:
    module: str  # the top-level name: "torch" for "from torch.nn import functional"
    path: Path
    line: int


def python_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        else:
            yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _literal_import(node: ast.Call) -> str | None:
    """``importlib.import_module("x.y")`` or ``__import__("x")`` -> the literal name."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("."):
        return first.value
    return None


def imports_in(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call):
            literal = _literal_import(node)
            names = [literal] if literal else []
        for name in names:
            yield Import(name.split(".")[0], path, node.lineno)


def own_modules(roots: Iterable[Path]) -> set[str]:
    """Top-level names the scanned folders define: a folder that is a package is one;
    a folder of packages (``plugins/``, ``src/``) contributes each package and module."""
    names: set[str] = set()
    for root in roots:
        if root.is_file():
            names.add(root.stem)
        elif (root / "__init__.py").is_file():
            names.add(root.name)
        else:
            names.update(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
            names.update(p.stem for p in root.glob("*.py"))
    return names


@dataclass
class Report:
    missing: dict[str, list[Import]] = field(default_factory=dict)  # distribution -> imports
    unknown: dict[str, list[Import]] = field(default_factory=dict)  # module -> imports
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unknown or self.unused)


def check(
    pyproject: Path,
    sources: list[Path],
    module_map: dict[str, list[str]] | None = None,
    declared_unused_ok: dict[str, str] | None = None,
    imported_optional_ok: dict[str, str] | None = None,
) -> Report:
    """Compare the imports under ``sources`` with ``pyproject``'s dependencies.

    ``module_map`` (top-level module -> distribution names) defaults to the installed
    distributions; the two allow-lists default to the ones at the top of this file.
    """
    declared_unused_ok = DECLARED_UNUSED_OK if declared_unused_ok is None else declared_unused_ok
    imported_optional_ok = IMPORTED_OPTIONAL_OK if imported_optional_ok is None else imported_optional_ok
    if module_map is None:
        module_map = dict(importlib.metadata.packages_distributions())
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    own_dist = normalize(project.get("name", ""))
    declared = {requirement_name(r) for r in project.get("dependencies", [])}
    extras = {
        requirement_name(r) for group in project.get("optional-dependencies", {}).values() for r in group
    }
    own = own_modules(sources)
    stdlib = set(sys.stdlib_module_names)

    used: dict[str, list[Import]] = {}  # distribution -> imports
    report = Report()
    for path in python_files(sources):
        for imp in imports_in(path):
            if imp.module in stdlib or imp.module in own:
                continue
            dists = {normalize(d) for d in module_map.get(imp.module, [])}
            if not dists:
                report.unknown.setdefault(imp.module, []).append(imp)
                continue
            if own_dist in dists:
                continue
            # Several distributions may provide one module (a fork, a -headless build):
            # a declared one wins; otherwise report them all, sorted.
            dist = min(dists & declared) if dists & declared else sorted(dists)[0]
            used.setdefault(dist, []).append(imp)

    for dist, where in sorted(used.items()):
        if dist in declared:
            continue
        if dist in imported_optional_ok and dist in extras:
            continue
        report.missing[dist] = where
    for dist in sorted(declared - set(used)):
        if dist in declared_unused_ok:
            continue
        report.unused.append(dist)
    for dist, why in sorted(declared_unused_ok.items()):
        if dist in declared and dist in used:
            report.notes.append(f"{dist} is imported now; its DECLARED_UNUSED_OK entry ({why}) can go")
    for dist, why in sorted(imported_optional_ok.items()):
        if dist in used and dist not in extras:
            report.notes.append(f"{dist} is allowed as optional ({why}) but no extra declares it")
    return report


def _shown(path: Path, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (default: the working folder) where it lies below it."""
    try:
        return str(path.resolve().relative_to((base or Path.cwd()).resolve()))
    except ValueError:
        return str(path)


def _where(imports: list[Import], base: Path) -> str:
    shown = [f"{_shown(i.path, base)}:{i.line}" for i in imports[:3]]
    more = f" and {len(imports) - 3} more" if len(imports) > 3 else ""
    return ", ".join(shown) + more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("sources", nargs="*", type=Path,
                        help=f"folders (or files) to scan; default: {', '.join(DEFAULT_SOURCES)} of this repository")
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml",
                        help="the pyproject.toml whose [project] dependencies are checked")
    args = parser.parse_args(argv)
    sources = args.sources or [REPO / s for s in DEFAULT_SOURCES]
    base = args.pyproject.resolve().parent

    for path in [args.pyproject, *sources]:
        if not path.exists():
            print(f"check_deps: {path}: no such file or folder", file=sys.stderr)
            return 2
    try:
        report = check(args.pyproject, sources)
    except SyntaxError as exc:
        print(f"check_deps: cannot check: {_shown(Path(exc.filename or '?'))}:{exc.lineno}: {exc.msg}",
              file=sys.stderr)
        return 2
    except (UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"check_deps: cannot check: {exc}", file=sys.stderr)
        return 2

    name = _shown(args.pyproject)
    for dist, where in report.missing.items():
        print(f"{name}: imported but not in [project] dependencies: {dist} ({_where(where, base)})")
    for module, where in sorted(report.unknown.items()):
        print(f"{name}: imported but no installed distribution provides it: {module} "
              f"({_where(where, base)}); install the project first, then declare what provides it")
    for dist in report.unused:
        print(f"{name}: in [project] dependencies but never imported: {dist} "
              "(remove it, or add it with a reason to DECLARED_UNUSED_OK in tools/check_deps.py)")
    for note in report.notes:
        print(f"{name}: note: {note}")
    if not report.ok:
        return 1
    print(f"{name}: dependencies match the imports of {', '.join(_shown(s) for s in sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
