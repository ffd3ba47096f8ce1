"""Small HTML pieces every report page is built from: escaped values, rows, sections, legends."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
WARN_COLOUR = "#d62728"
LOSS_KEYS = ("d_loss", "g_loss")
D_KEYS = ("d_real", "d_fake")
LABELS = {"d_loss": "D loss", "g_loss": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))",
          "it_s": "iterations / s"}
# bookkeeping in eval rows, not to plot
NOT_METRICS = {"step", "n", "kid_subset", "fid_eps", "classes_min_count", "n_classes"}
RECORD_KEYS = ("data_used",)  # shown as their own table, not as config rows


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _value(v: Any) -> str:
    """A config or table value as short text: strings bare, everything else as JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return _num(v)
    return json.dumps(v, separators=(", ", ": "))


def _differs(values: list[Any]) -> bool:
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def _row(key: str, cells: list[str], highlight: bool) -> str:
    """A table row: the key as header, ``cells`` already HTML."""
    cls = ' class="diff"' if highlight else ""
    return f"<tr{cls}><th>{_esc(key)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>{body}</section>"


def _swatch(colour: str, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    return (f'<svg class="swatch" width="26" height="10"><line x1="1" y1="5" x2="25" y2="5" '
            f'stroke="{colour}" stroke-width="3"{dash}/></svg>')


def _legend(items: Sequence[tuple[str, str, bool]]) -> str:
    return '<div class="legend">' + "".join(
        f"<span>{_swatch(c, dashed)} {_esc(label)}</span>" for label, c, dashed in items
    ) + "</div>"


def _figure(title: str, svg: str, legend: Sequence[tuple[str, str, bool]] = ()) -> str:
    if not svg:
        return ""
    return (f'<figure class="chart-box"><figcaption>{_esc(title)}</figcaption>'
            f'{_legend(legend) if legend else ""}{svg}</figure>')
