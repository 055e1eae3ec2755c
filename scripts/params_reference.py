"""The params reference, generated from the config dataclasses (used by scripts/docs_tables.py).

One source of truth: each field's attribute docstring in `pipeline/config.py` (read with
`ast`, since Python keeps no attribute docstrings at run time), its type (a `Literal`'s
values are the allowed ones) and its value in params.yaml. The walk starts at `Params`
and follows every field whose type is a section dataclass, so a section added to
`Params` later appears here without a change to this file.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.config import Params, Section

MAX_VALUE = 48  # characters of a params.yaml value shown in a table cell (mirror lists, hashes)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a class's fields: `name: T` followed by a string literal."""
    tree = ast.parse(Path(inspect.getsourcefile(cls) or "").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    docs: dict[str, str] = {}
    for stmt, nxt in zip(node.body, node.body[1:], strict=False):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def allowed(tp: Any) -> str:
    """A field type in words: a Literal's values, `a | b` for unions, the type's name otherwise."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(allowed(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {allowed(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {Path: "path", str: "text", int: "integer", float: "number", bool: "true/false"}.get(tp, str(tp))


def _value(raw: dict[str, Any], dotted: str) -> str:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "(missing)"
        node = node[part]
    text = json.dumps(node, ensure_ascii=False) if not isinstance(node, str) else (node or "''")
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sections(cls: type = Params) -> list[type[Section]]:
    """Every section dataclass under `cls`, depth first, in field order (the order of params.yaml)."""
    out: list[type[Section]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and issubclass(tp, Section):
            out.append(tp)
            out.extend(sections(tp))
    return out


def render(params_yaml: Path) -> str:
    """The reference: per section its docstring and a table of key, allowed values, value, meaning."""
    raw = yaml.safe_load(params_yaml.read_text())
    parts: list[str] = []
    for sec in sections():
        hints, docs = typing.get_type_hints(sec), field_docs(sec)
        rows = ["| key | allowed | params.yaml | what and why |", "| --- | --- | --- | --- |"]
        for f in dataclasses.fields(sec):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                rows.append(f"| `{sec.key(f.name)}` | section | | see [`{tp.KEY}`](#{tp.KEY.replace('.', '')}) |")  # type: ignore[union-attr]
                continue
            value = _cell(_value(raw, sec.key(f.name)))
            rows.append(f"| `{sec.key(f.name)}` | {allowed(tp)} | `{value}` | {_cell(docs.get(f.name, ''))} |")
        doc = " ".join(inspect.cleandoc(sec.__doc__ or "").split())
        parts.append(f"### {sec.KEY}\n\n{doc}\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"
