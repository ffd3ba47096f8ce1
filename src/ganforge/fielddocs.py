"""Each config field's one-line doc, read from the comments beside it in config.py, and the
field listing of ``ganforge train --help`` built from them.

The comments are the one place a field is documented: ``name: type = default  # doc`` or a
``#: doc`` line just above the field (Sphinx's convention for attribute docs). They are read
with the standard library's tokenizer, so config.py stays a plain dataclass that reads well
as source, and nothing is copied by hand into the help.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import textwrap
import tokenize
from collections.abc import Callable
from functools import cache
from typing import Any

from .config import Config
from .registry import Registry


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    name: str
    doc: str
    section: str  # the ``# data``-style heading above the field in config.py


@cache
def field_docs() -> dict[str, FieldDoc]:
    """Config field name -> its doc and section, in declaration order."""
    source = textwrap.dedent(inspect.getsource(Config))
    names = {f.name for f in dataclasses.fields(Config)}
    lines = source.splitlines()
    comments: dict[int, str] = {}  # line number (1-based) -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
    out: dict[str, FieldDoc] = {}
    section, pending = "", ""
    for no, line in enumerate(lines, start=1):
        stripped = line.strip()
        comment = comments.get(no, "")
        if stripped.startswith("#:"):
            pending = comment[2:].strip()
            continue
        if stripped.startswith("#"):
            section, pending = comment[1:].strip(), ""
            continue
        name = stripped.split(":", 1)[0].strip()
        if name in names and ":" in stripped:
            doc = comment[1:].strip() if comment else pending
            out[name] = FieldDoc(name, doc, section)
        pending = ""
    return out


def _registries() -> dict[str, Registry[Any]]:
    """Fields whose value names a registry entry: the registry is the list of choices."""
    from .data import DATASETS
    from .features import FEATURES
    from .losses import OBJECTIVES
    from .metrics import METRICS
    from .models import INITS, MODELS
    from .optim import LR_SCHEDULES, OPTIMIZERS
    from .presets import PRESETS
    from .priors import PRIORS

    return {"preset": PRESETS, "dataset": DATASETS, "model": MODELS, "init": INITS,
            "prior": PRIORS, "objective": OBJECTIVES, "metrics": METRICS,
            "keep_best": METRICS, "features": FEATURES, "optimizer": OPTIMIZERS,
            "lr_decay": LR_SCHEDULES}


def choices(name: str) -> list[str] | None:
    registry = _registries().get(name)
    return registry.names() if registry is not None else None


def default_text(f: dataclasses.Field[Any]) -> str:
    """The dataclass default as one types it with --set (lists comma-separated)."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    else:
        factory: Callable[[], Any] = f.default_factory  # type: ignore[assignment]
        value = factory()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


def flag_help(name: str) -> str:
    """The help of a named flag: the field's doc, default and (registry) choices."""
    f = next(f for f in dataclasses.fields(Config) if f.name == name)
    text = f"{field_docs()[name].doc} [default: {default_text(f)}]"
    names = choices(name)
    return text + (f" [choices: {', '.join(names)}]" if names else "")


def field_listing(width: int = 100) -> str:
    """Every config field by section, with its type, default, choices and doc; then the
    presets. Printed at the end of ``train --help`` and ``sweep --help``."""
    import typing

    hints = typing.get_type_hints(Config)
    docs = field_docs()
    wrap = textwrap.TextWrapper(width=width, initial_indent=" " * 6,
                                subsequent_indent=" " * 6)
    parts = textwrap.wrap("config fields: set any with --set KEY=VALUE or in a --config file "
                          "(the defaults are the dataclass's; a preset may set its own: see "
                          "--dry-run)", width)
    section = None
    for f in dataclasses.fields(Config):
        d = docs[f.name]
        if d.section != section:
            section = d.section
            parts.append(f"  {section}:" if section else "")
        kind = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        parts.append(f"    {f.name} ({kind}, default {default_text(f)})")
        text = d.doc
        names = choices(f.name)
        if names:
            text += f" [choices: {', '.join(names)}]"
        parts.extend(wrap.wrap(text))
    from .presets import PRESETS

    parts.append("")
    parts.append("presets (--preset NAME):")
    for name in PRESETS:
        parts.append(f"    {name}")
        parts.extend(wrap.wrap(PRESETS.doc(name)))
    return "\n".join(parts) + "\n"
