"""``pip install .`` installs what the installed packages import: every third-party module imported
anywhere in them comes from a distribution that ``install_requires`` names or pulls in."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Modules not from PyPI: ``softfloat`` is built from source by scripts/build_softfloat.sh (make install).
NOT_FROM_PYPI = {"softfloat"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """``names`` and every distribution they require (extras left out), transitively."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [_name(d) for d in deps if "extra ==" not in d]
    return seen


def _packages() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = cfg["options.packages.find"].get("include", "")
    return sorted({p.strip().split(".")[0].rstrip("*") for p in include.split() if p.strip()})


def _imports(package: Path) -> set[str]:
    out: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out


def test_every_imported_module_is_installed_by_the_requirements() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = _closure({_name(r) for r in cfg["options"]["install_requires"].splitlines()
                         if r.strip() and not r.strip().startswith("#")})  # fmt: skip
    packages = _packages()
    assert packages, "setup.cfg names no packages"
    distributions = packages_distributions()
    missing = {}
    for package in packages:
        for module in _imports(ROOT / package) - set(packages) - set(sys.stdlib_module_names) - NOT_FROM_PYPI:
            dists = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
            if not dists & required:
                missing[module] = sorted(dists) or ["(not installed here)"]
    assert not missing, f"imported but not installed by install_requires: {missing}"
