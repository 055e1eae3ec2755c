"""dvc.yaml's code dependencies are exactly the project modules each stage imports.

The rule (dvc.yaml's header): a stage lists, as files or package folders, every
project module its command imports, directly or through other project modules, at
module level or inside a function; the modules named on the header's `exempt:` line
change no output and are left out (and so is what only they import). Every listed code dependency must hold at least
one module the stage imports, so a stale entry shows up as well as a missing one.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
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


def imported_modules(entry: Path, exempt: tuple[str, ...] = ()) -> set[Path]:
    """Every project module reachable from `entry` by imports (entry included).

    Imports are not followed out of an `exempt` module: what tracking uses serves tracking.
    """
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if not any(_covers(e, path) for e in exempt):
            todo.extend(_imports(path) - seen)
    return seen


def _config() -> tuple[dict, list[str]]:
    text = (ROOT / "dvc.yaml").read_text()
    match = re.search(r"^#\s*exempt:(.*)$", text, re.M)
    assert match, "dvc.yaml's header must name the exempt modules on a '# exempt:' line"
    return yaml.safe_load(text)["stages"], match.group(1).split()


def _is_empty_init(path: Path) -> bool:
    """An __init__.py that holds nothing but a docstring runs no code."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


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
        for m in imported_modules(_entry(stage["cmd"]), tuple(EXEMPT))
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


# ---- params: each stage lists exactly the keys its code reads --------------------------


class ParamsReads:
    """Records every params key read while it is installed, e.g. `train.lr`.

    Reads are attribute accesses on a params section that return a value (not another
    section). Not counted: validation (`__post_init__`, `_ranges`), resolving paths, and
    `to_yaml_dict(params)` of the *whole* params (every artefact carries all params for
    provenance, and MLflow logs them all: that is not depending on them).
    """

    SKIP_FRAMES = frozenset({"__post_init__", "_ranges", "_fail_unless", "resolve", "__repr__", "__eq__", "__hash__"})

    def __init__(self, root_params: object) -> None:
        self.root = root_params
        self.prefix: dict[int, str] = {id(root_params): ""}
        self.keys: set[str] = set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pipeline.config import Section

        recorder = self
        original = object.__getattribute__

        def spy(obj: object, name: str) -> object:
            value = original(obj, name)
            fields = original(obj, "__dataclass_fields__")
            if name in fields and not recorder._skipped(sys._getframe(1)):
                prefix = recorder.prefix.get(id(obj))
                if prefix is not None:
                    key = f"{prefix}.{name}" if prefix else name
                    if isinstance(value, Section):
                        recorder.prefix[id(value)] = key
                    else:
                        recorder.keys.add(key.replace(".lam", ".lambda"))
            return value

        for cls in _all_subclasses(Section):
            monkeypatch.setattr(cls, "__getattribute__", spy)

    def _skipped(self, frame: object) -> bool:
        if frame.f_code.co_name in self.SKIP_FRAMES:
            return True
        while frame is not None:  # inside to_yaml_dict(<the whole params>)?
            if frame.f_code.co_name == "to_yaml_dict" and frame.f_locals.get("obj") is self.root:
                return True
            frame = frame.f_back
        return False

    def take(self) -> set[str]:
        keys, self.keys = self.keys, set()
        return {k for k in keys if not k.startswith("paths.")}


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def _check_params(name: str, read: set[str]) -> None:
    listed = [p if isinstance(p, str) else next(iter(p)) for p in STAGES[name].get("params", [])]
    missing = sorted(k for k in read if not any(k == e or k.startswith(e + ".") for e in listed))
    assert not missing, f"stage '{name}' reads {missing}, which its dvc.yaml params do not list"
    dead = [e for e in listed if not any(k == e or k.startswith(e + ".") for k in read)]
    assert not dead, f"stage '{name}' lists params {dead} in dvc.yaml, which its code never reads"


@pytest.mark.slow
def test_stage_params_are_exactly_the_keys_the_stage_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import json

    from tests.conftest import shrunk_params

    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    synthetic = {"n_images": 16, "seed": 0, "test_fraction": 0.45, "height": 480, "width": 640}
    params = shrunk_params(data={"synthetic": synthetic})
    reads = ParamsReads(params)
    reads.install(monkeypatch)
    run = {n: importlib.import_module(f"stages.{n}").run for n in STAGES}
    found: dict[str, set[str]] = {n: set() for n in STAGES}
    # Synthetic source, then the real source on the files just written (a local path:
    # hard-linked, so every key the download reads is exercised offline).
    run["download"](params, tmp_path / "synthetic")
    found["download"] |= reads.take()
    run["sequences"](params, tmp_path / "synthetic")  # the shrunk synthetic sequences (conftest)
    found["sequences"] |= reads.take()
    raw = tmp_path / "synthetic" / params.paths.labeled
    splits = str(raw.with_name("splits.mat"))
    data = dataclasses.replace(params.data, source="nyudv2", url=str(raw), splits_url=splits, size=0, sha256="")
    real = dataclasses.replace(params, data=dataclasses.replace(data, splits_sha256=""))
    reads.root = real
    reads.prefix = {id(real): ""}
    for name in (
        "download",
        "preprocess",
        "sequences",
        "align_data",  # loss.align.weight 0: a note, train without the term
        "train",
        "evaluate",
        "pose_reference",
        "pose",
        "report",
        "track",
    ):
        run[name](real, tmp_path)
        found[name] |= reads.take()
    # The alignment term on: align_data renders (one tiny sequence) and reads the rest of its keys.
    on = dataclasses.replace(real.loss.align, weight=1.0, sequences=1, frames=3, gaps=[1])
    term = dataclasses.replace(real, loss=dataclasses.replace(real.loss, align=on))
    reads.take()  # building it read the loss keys: not the stage's reads
    reads.root = term
    reads.prefix = {id(term): ""}
    run["align_data"](term, tmp_path / "align")
    found["align_data"] |= reads.take()
    # The folder source: its keys are read by download and preprocess, on a tiny BTS-layout set.
    from tests.folder_fixtures import make_bts, params_for

    fs = make_bts(tmp_path / "folder" / "data/raw/bts/sync")
    folder = dataclasses.replace(real, data=params_for(fs, tmp_path / "folder").data)
    reads.root = folder
    reads.prefix = {id(folder): ""}
    for name in ("download", "preprocess"):
        run[name](folder, tmp_path / "folder")
        found[name] |= reads.take()
    # The report words some sections by source: read them on the synthetic wording too.
    metrics = tmp_path / params.paths.metrics
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "source": "synthetic"}))
    run["report"](real, tmp_path)
    found["report"] |= reads.take()
    for name in STAGES:
        _check_params(name, found[name])
