"""The sweep's page: one row per run with the best run marked, each run's latest samples."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import GanforgeError
from ..evaluate import LOWER_IS_BETTER
from ..files import atomic_write_text, check_out
from .assets import document, written
from .charts import Line, _pair_chart, svg_chart
from .parts import (
    COLOURS,
    D_KEYS,
    LABELS,
    LOSS_KEYS,
    NOT_METRICS,
    _esc,
    _figure,
    _is_num,
    _legend,
    _num,
    _section,
    _value,
)
from .rundir import RunData, _data_uri, _series
from .sweep_data import SweepData, SweepRow, load_sweep, rank_value

SWEEP_CSS = """
table.sweep td{font-variant-numeric:tabular-nums;white-space:nowrap}
table.sweep tr.best{background:#e3f6e3}table.sweep tr.best td.rank{font-weight:700}
.badge{background:#2ca02c;color:#fff;border-radius:4px;padding:0 5px;font-size:11.5px}
.bad{color:#b02a1b}ul.read-warnings{color:#b02a1b;margin:0;padding-left:20px}
.cards{display:flex;flex-wrap:wrap;gap:14px}
.card{flex:1 1 340px;max-width:440px;border:1px solid #e2e4e8;border-radius:6px;padding:8px}
.card.best{border:2px solid #2ca02c}.card h3{margin:0 0 6px}
.card img{max-width:100%;height:auto;display:block;border:1px solid #e2e4e8}
"""


def _text(v: Any) -> str:
    """A table cell's value: numbers short, anything else as compact text, missing as —."""
    if v is None:
        return "—"
    return _esc(_num(v) if _is_num(v) else _value(v))


def _href(target: Path, page_dir: Path) -> str:
    """A link from the page to ``target`` that still works when both are moved together."""
    rel = Path(os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir)))
    return _esc(quote(rel.as_posix()))


def _final_keys(rows: list[SweepRow]) -> list[str]:
    known = [k for k in (*LOSS_KEYS, *D_KEYS) if any(k in r.final for r in rows)]
    other = dict.fromkeys(k for r in rows for k, v in r.final.items()
                          if _is_num(v) and k not in (*known, "step", "it_s"))
    return known + list(other)


def _metric_keys(rows: list[SweepRow]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k, v in r.metrics.items()
                              if _is_num(v) and k not in NOT_METRICS and not k.endswith("_std")))


def _direction(metric: str) -> str:
    return "lowest" if metric in LOWER_IS_BETTER else "highest"


def best_note(sweep: SweepData) -> str:
    """One sentence: which run is marked best and by what, or why none is."""
    if sweep.rank_by is None:
        return ("No best run marked: the sweep ranks its runs by no metric (its config sets "
                "no keep_best, so nothing was evaluated to rank by).")
    if sweep.best is None:
        return f"No best run marked: no run has a finite {_esc(sweep.rank_by)} value."
    row = sweep.rows[sweep.best]
    return (f"Best run: <b>{_esc(row.dir)}</b>, by {_direction(sweep.rank_by)} "
            f"{_esc(sweep.rank_by)} ({_text(rank_value(row, sweep.rank_by))}).")


def _runs_table(sweep: SweepData, page_dir: Path) -> str:
    rows, rank_by = sweep.rows, sweep.rank_by
    varied = list(dict.fromkeys([*sweep.vary, *(k for r in rows for k in r.varied)]))
    finals, metrics = _final_keys(rows), _metric_keys(rows)
    head = ["run", "seed", *map(_esc, varied), "status", "iterations",
            *(f"final {_esc(LABELS.get(k, k))}" for k in finals)]
    if rank_by is not None:
        head.append(f"{_esc(rank_by)} ({_direction(rank_by)} wins)")
    head += [f"last {_esc(k)}" for k in metrics] + ["pages"]
    body = []
    for i, r in enumerate(rows):
        is_best = i == sweep.best
        first = f'<a href="#{_esc(r.dir)}">{_esc(r.dir)}</a>' + (
            ' <span class="badge">best</span>' if is_best else "")
        status = _esc(r.status) if r.status == "complete" else \
            f'<span class="bad">{_esc(r.status)}</span>'
        cells = [first, _text(r.seed), *(_text(r.varied.get(k)) for k in varied), status,
                 _text(r.step), *(_text(r.final.get(k)) for k in finals)]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        if rank_by is not None:
            tds += f'<td class="rank">{_text(rank_value(r, rank_by))}</td>'
        tds += "".join(f"<td>{_text(r.metrics.get(k))}</td>" for k in metrics)
        own = r.data.dir / "report.html" if r.data is not None else None
        tds += (f'<td><a href="{_href(own, page_dir)}">report</a></td>'
                if own is not None and own.is_file() else "<td>—</td>")
        cls = ' class="best"' if is_best else ""
        body.append(f'<tr{cls} data-run="{_esc(r.run)}">{tds}</tr>')
    thead = "".join(f"<th>{h}</th>" for h in head)
    return (f'<p>{best_note(sweep)}</p><table class="sweep"><thead><tr>{thead}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _latest_sample(run: RunData) -> str:
    for step, path in reversed(run.frames):  # the newest snapshot that is a whole PNG
        uri = _data_uri(path)
        if uri is not None:
            label = f"iteration {step}" if step is not None else path.name
            return (f"<figure><figcaption>Latest samples ({_esc(label)})</figcaption>"
                    f'<img src="{uri}" alt="samples of {_esc(run.name)} at {_esc(label)}">'
                    "</figure>")
    return '<p class="note">No snapshots in samples/.</p>'


def _card(row: SweepRow, is_best: bool, page_dir: Path) -> str:
    title = _esc(row.dir) + (' <span class="badge">best</span>' if is_best else "")
    parts = [f"<h3>{title}</h3>"]
    if row.data is None:
        parts.append(f'<p class="bad">run folder unreadable: {_esc(row.problem)}</p>')
    else:
        run = row.data
        parts.append(_latest_sample(run))
        lines = [Line(LABELS[k], COLOURS[j], _series(run.train, k))
                 for j, k in enumerate(LOSS_KEYS)]
        lines = [ln for ln in lines if ln.points]
        parts.append(_figure("Losses", svg_chart("Losses", lines, width=420, height=190),
                             [(ln.label, ln.colour, False) for ln in lines]))
        own = run.dir / "report.html"
        parts.append(f'<p><a href="{_href(own, page_dir)}">{_esc(row.dir)}/report.html</a>: '
                     "this run's own page</p>" if own.is_file() else
                     f'<p class="note">ganforge report {_esc(run.dir)} writes this run\'s own '
                     "page.</p>")
        if run.skipped_lines:
            parts.append(f'<p class="note">metrics.jsonl: {run.skipped_lines} unreadable '
                         "line(s) skipped.</p>")
    cls = "card best" if is_best else "card"
    return f'<article class="{cls}" id="{_esc(row.dir)}">{"".join(parts)}</article>'


def _about(sweep: SweepData) -> str:
    cfg = sweep.base or next((r.data.config for r in sweep.rows if r.data is not None), {})
    bits = [f"{k} {_esc(_value(cfg[k]))}" for k in ("preset", "dataset", "model", "objective")
            if k in cfg]
    if _is_num(cfg.get("steps")):
        bits.append(f"{cfg['steps']} iterations")
    vary = "; ".join(f"{_esc(k)} = {_esc(', '.join(_value(v) for v in vs))}"
                     if isinstance(vs, list) else f"{_esc(k)} = {_esc(_value(vs))}"
                     for k, vs in sweep.vary.items())
    bits.append(f"varied: {vary}; seed: one per run" if vary else "varied: the seed only")
    return " &middot; ".join(bits)


def render_sweep(sweep: SweepData, page_dir: Path) -> str:
    """The whole sweep page; links are relative to ``page_dir``, where the page goes."""
    title = f"ganforge sweep report: {sweep.name}"
    header = (f"<header><h1>{_esc(title)}</h1><p class=\"sub\">{_esc(sweep.dir)} &middot; "
              f"{len(sweep.rows)} run(s), rows from {_esc(sweep.source)} &middot; "
              f"{written()}</p><p class=\"sub\">{_about(sweep)}</p></header>")
    body = [header]
    if sweep.warnings:
        items = "".join(f"<li>{_esc(w)}</li>" for w in dict.fromkeys(sweep.warnings))
        body.append(_section(f"Read with {len(dict.fromkeys(sweep.warnings))} warning(s)",
                             f'<ul class="read-warnings">{items}</ul>'))
    links = [f'<a href="{_href(sweep.dir / n, page_dir)}">{n}</a>'
             for n in ("summary.json", "summary.csv") if (sweep.dir / n).is_file()]
    extra = f'<p class="note">{" &middot; ".join(links)}</p>' if links else ""
    body.append(_section("Runs", _runs_table(sweep, page_dir) + extra))
    loaded = [r.data for r in sweep.rows if r.data is not None]
    chart = _pair_chart("Losses", loaded, LOSS_KEYS, marks=False) if loaded else ""
    if chart:
        legend = _legend([(r.name, COLOURS[i % len(COLOURS)], False)
                          for i, r in enumerate(loaded)]) if len(loaded) > 1 else ""
        body.append(_section("Losses of every run", legend + f'<div class="charts">{chart}'
                                                           "</div>"))
    cards = "".join(_card(r, i == sweep.best, page_dir) for i, r in enumerate(sweep.rows))
    body.append(_section("Each run: latest samples", f'<div class="cards">{cards}</div>'))
    return document(title, "".join(body), SWEEP_CSS)


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the sweep's ``report.html`` (default: in the sweep folder); return its path.

    What could not be read is said in one ``ganforge: warning:`` line each and on the page."""
    d = Path(sweep_dir)
    sweep = load_sweep(d)
    path = Path(out) if out is not None else d / "report.html"
    if path.is_dir():
        raise GanforgeError(f"report output {path}: is a folder; expected an .html file path")
    check_out(path, [d, d / "summary.json", d / "summary.csv",
                     *(r.data.dir for r in sweep.rows if r.data is not None)])
    for w in dict.fromkeys(sweep.warnings):
        print(f"ganforge: warning: {' '.join(w.split())}", file=sys.stderr)
    try:
        atomic_write_text(path, render_sweep(sweep, path.parent))
    except OSError as e:
        raise GanforgeError(f"report output {path}: cannot write ({e.strerror or e})") from e
    return path
