"""The run report's record of each run: its configuration, the data and machine it used."""

from __future__ import annotations

from typing import Any

from .parts import RECORD_KEYS, _differs, _esc, _row, _section, _value
from .relevance import matters, preset_values
from .rundir import RunData


def _config_cell(key: str, value: Any, preset: dict[str, Any], name: Any) -> str:
    """A config value; marked (with the preset's value) where it differs from the preset."""
    text = _esc(_value(value))
    if key in ("preset", "out") or key not in preset or not _differs([value, preset[key]]):
        return text
    was = _esc(_value(preset[key]))
    return (f'<span class="changed" title="preset {_esc(name)}: {was}">{text}</span> '
            f'<span class="was">preset: {was}</span>')


def _config_section(runs: list[RunData]) -> str:
    keys = [k for k in dict.fromkeys(k for r in runs for k in r.config) if k not in RECORD_KEYS]
    presets = [preset_values(r.config) for r in runs]
    missing = object()
    rows, n_diff, n_hidden, n_changed = [], 0, 0, 0
    for k in keys:
        vals = [r.config.get(k, missing) for r in runs]
        differs = len(runs) > 1 and _differs(["\0" if v is missing else v for v in vals])
        relevant = any(matters(k, r.config) for r in runs)
        n_diff += differs
        n_hidden += not relevant
        cells = ["—" if v is missing else _config_cell(k, v, p, r.config.get("preset"))
                 for v, p, r in zip(vals, presets, runs, strict=True)]
        n_changed += any('class="changed"' in c for c in cells)
        row = _row(k, cells, differs)
        rows.append(row if relevant else row.replace("<tr", '<tr data-unused="1"', 1))
    unused = (f'<label><input type="checkbox" class="show-unused"> show the {n_hidden} '
              "fields that have no effect in this run</label>" if n_hidden else "")
    changed = (f'{n_changed} value(s) differ from the preset (marked, with the preset\'s '
               "value). " if n_changed else "")
    if len(runs) == 1:  # one long key/value list reads better in two columns
        half = (len(rows) - n_hidden + 1) // 2
        shown = [r for r in rows if "data-unused" not in r]
        hidden = [r for r in rows if "data-unused" in r]
        parts = (shown[:half], shown[half:] + hidden)
        tables = "".join(f'<table class="config"><tbody>{"".join(part)}</tbody></table>'
                         for part in parts if part)
        return _section("Configuration", f'<p class="note">{changed}{unused}</p>'
                                         f'<div class="config-cols">{tables}</div>')
    head = "<thead><tr><th></th>" + "".join(f"<th>{_esc(r.name)}</th>" for r in runs) \
           + "</tr></thead>"
    note = (f'<p class="note">{n_diff} of {len(keys)} keys differ (highlighted). '
            '<label><input type="checkbox" class="only-diff"> show only those</label> '
            f"{changed}{unused}</p>")
    return _section("Configuration", f'{note}<table class="config">{head}<tbody>'
                                     f'{"".join(rows)}</tbody></table>')


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _cell(v: Any) -> str:
    if isinstance(v, list):  # e.g. the data files: one per line
        return "<br>".join(_esc(_value(x)) for x in v)
    return _esc(_value(v))


def _data_section(runs: list[RunData]) -> str:
    """config.json's record of the data and the machine each run used, as a table."""
    used = [r.config.get("data_used") if isinstance(r.config.get("data_used"), dict) else {}
            for r in runs]
    flat = [dict(_flat(u)) for u in used]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    if not keys:
        return ""
    head = ("<thead><tr><th></th>" + "".join(f"<th>{_esc(r.name)}</th>" for r in runs)
            + "</tr></thead>") if len(runs) > 1 else ""
    rows = "".join(_row(k, [_cell(f[k]) if k in f else "—" for f in flat],
                        len(runs) > 1 and _differs([f.get(k) for f in flat])) for k in keys)
    return _section("Data and machine", f'<table class="data-used">{head}<tbody>{rows}'
                                        "</tbody></table>")
