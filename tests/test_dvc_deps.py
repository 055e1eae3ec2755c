"""dvc.yaml's code dependencies are exactly the project modules each stage imports.

The rule (dvc.yaml's header): a stage lists, as files or package folders, every
project module its command imports, directly or through other project modules, at
module level or inside a function; the modules named on the header's `exempt:` line
change no output and are left out. Every listed code dependency must hold at least
one module the stage imports, so a stale entry shows up as well as a missing one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def _module_file(dotted: str) -> Path | None:
    """`pipeline.data.nyu` -> pipeline/data/nyu.py (or the package's __init__.py), if it exists."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[Path]:
    """Project modules `path` imports, with the __init__.py of every package on the way."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import submodule`
    found: set[Path] = set()
    for name in names:
        if name.split(".")[0] not in PACKAGES:
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            file = _module_file(".".join(parts[:i]))
            if file is not None:
                found.add(file)
    return found


def imported_modules(entry: Path) -> set[Path]:
    """Every project module reachable from `entry` by imports (entry included)."""
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path) - seen)
    return seen


def _config() -> tuple[dict, list[str]]:
    text = (ROOT / "dvc.yaml").read_text()
    match = re.search(r"^#\s*exempt:(.*)$", text, re.M)
    assert match, "dvc.yaml's header must name the exempt modules on a '# exempt:' line"
    return yaml.safe_load(text)["stages"], match.group(1).split()


def _is_empty_init(path: Path) -> bool:
    return path.name == "__init__.py" and not path.read_text().strip()


def _covers(dep: str, path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return rel == dep or rel.startswith(dep.rstrip("/") + "/")


def _entry(cmd: str) -> Path:
    match = re.search(r"-m (stages\.\w+)", cmd)
    assert match, f"stage command {cmd!r} does not run a stages.<name> module"
    return _module_file(match.group(1))


STAGES, EXEMPT = _config()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_exactly_the_imported_modules(name: str) -> None:
    stage = STAGES[name]
    deps = [d for d in stage.get("deps", []) if isinstance(d, str) and d.split("/")[0] in PACKAGES]
    used = {
        m
        for m in imported_modules(_entry(stage["cmd"]))
        if not _is_empty_init(m) and not any(_covers(e, m) for e in EXEMPT)
    }
    missing = sorted(m.relative_to(ROOT).as_posix() for m in used if not any(_covers(d, m) for d in deps))
    assert not missing, f"stage '{name}' imports {missing} but dvc.yaml does not list them (nor exempts them)"
    stale = [d for d in deps if not any(_covers(d, m) for m in used)]
    assert not stale, f"stage '{name}' lists {stale} in dvc.yaml but imports nothing there"
    exempt_listed = [d for d in deps if any(_covers(e, ROOT / d) for e in EXEMPT)]
    assert not exempt_listed, f"stage '{name}' lists exempt modules {exempt_listed}"
    assert len(deps) == len(set(deps)), f"stage '{name}' lists a dependency twice: {deps}"


def test_exempt_modules_exist() -> None:
    for e in EXEMPT:
        assert (ROOT / e).exists(), f"dvc.yaml exempts {e}, which does not exist"


def test_the_checker_sees_function_level_and_from_imports(tmp_path: Path) -> None:
    # The checker itself must be able to fail: the download stage imports the renderer
    # only inside a function, and evaluate reaches the metrics through other modules.
    download = {m.relative_to(ROOT).as_posix() for m in imported_modules(_entry(STAGES["download"]["cmd"]))}
    assert any("synthetic" in m for m in download), download
    evaluate = {m.relative_to(ROOT).as_posix() for m in imported_modules(_entry(STAGES["evaluate"]["cmd"]))}
    assert "pipeline/metrics.py" in evaluate
