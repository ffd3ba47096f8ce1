"""One self-contained HTML page about one or several run folders.

Everything the page shows is inside the file: charts are inline SVG drawn here, pictures are
base64 data URIs, the snapshot player is a few lines of inline JavaScript. The page can be
mailed, archived or opened offline and never fetches anything.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GanforgeError
from .files import atomic_write_text, check_out

MAX_FRAMES = 200  # player frames per run: hundreds of inlined PNGs would make a huge page
MAX_PATH_POINTS = 2000  # per curve; more is invisible at chart width and only adds bytes
MAX_MARKERS = 150  # hover targets per curve
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
WARN_COLOUR = "#d62728"
LOSS_KEYS = ("d_loss", "g_loss")
D_KEYS = ("d_real", "d_fake")
LABELS = {"d_loss": "D loss", "g_loss": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))",
          "it_s": "iterations / s"}
# bookkeeping in eval rows, not to plot
NOT_METRICS = {"step", "n", "kid_subset", "fid_eps", "classes_min_count", "n_classes"}
STEP_RE = re.compile(r"step-(\d+)")
RECORD_KEYS = ("data_used",)  # shown as their own table, not as config rows


def _c(key: str, *values: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda cfg: cfg.get(key) in values


# Config fields that matter only in some runs, and when they do; every other field always
# matters. The report shows a run's fields that matter and hides the rest behind a checkbox.
MATTERS_WHEN: dict[str, Callable[[dict[str, Any]], bool]] = {
    **dict.fromkeys(("toy_means", "toy_stds", "toy_weights"), _c("dataset", "gaussian-1d")),
    **dict.fromkeys(("image_size", "channels", "strict"), _c("dataset", "image-folder")),
    "cond_mode": _c("conditional", True),
    "d_batchnorm": _c("model", "dcgan"),
    "channels_last": _c("model", "dcgan", "resnet"),
    "clip": _c("objective", "wasserstein"),
    "gp_lambda": _c("objective", "wgan-gp"),
    **dict.fromkeys(("began_gamma", "began_lambda_k"), _c("objective", "began")),
    "reg_interval": lambda cfg: bool(cfg.get("r1_gamma") or cfg.get("r2_gamma")),
    **dict.fromkeys(("metrics", "eval_n", "features", "keep_best"),
                    lambda cfg: bool(cfg.get("eval_every"))),
    **dict.fromkeys(("nan_lr_factor", "max_rollbacks"), _c("on_nan", "rollback")),
    **dict.fromkeys(("sync_bn", "dist_timeout"),
                    lambda cfg: (cfg.get("data_used") or {}).get("processes", 1) > 1),
    **dict.fromkeys(("mlflow_uri", "mlflow_experiment"), _c("mlflow", "on")),
}


def matters(key: str, cfg: dict[str, Any]) -> bool:
    """Whether config field ``key`` has any effect in the run of ``cfg``."""
    when = MATTERS_WHEN.get(key)
    return when is None or bool(when(cfg))


def preset_values(cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of the run's preset as the preset sets them ({} for an unknown preset)."""
    from .presets import PRESETS

    name = cfg.get("preset")
    if not isinstance(name, str) or name not in PRESETS:
        return {}
    return PRESETS.get(name)().to_dict()


@dataclass
class RunData:
    """What one run folder holds, sorted into the kinds of rows the report shows."""

    dir: Path
    name: str
    config: dict[str, Any]
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[int | None, Path]] = field(default_factory=list)
    skipped_lines: int = 0
    eval_json: dict[str, Any] | None = None  # what `ganforge eval` last wrote (eval.json)


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


# --- reading run folders -----------------------------------------------------------------


def load_run(path: str | Path) -> RunData:
    """Read a run folder; anything that is not one raises a one-line GanforgeError."""
    d = Path(path)
    if not d.exists():
        raise GanforgeError(f"RUN_DIR {d}: no such folder")
    if not d.is_dir():
        raise GanforgeError(f"RUN_DIR {d}: not a folder (expected a ganforge run folder)")
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise GanforgeError(f"RUN_DIR {d}: not a ganforge run folder (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise GanforgeError(f"RUN_DIR {d}: cannot read config.json ({e})") from e
    except json.JSONDecodeError as e:
        raise GanforgeError(f"RUN_DIR {d}: config.json is not valid JSON "
                            f"({e.msg}, line {e.lineno})") from e
    except RecursionError:
        raise GanforgeError(f"RUN_DIR {d}: config.json is nested too deeply") from None
    if not isinstance(config, dict):
        raise GanforgeError(f"RUN_DIR {d}: config.json does not hold a JSON object")
    run = RunData(dir=d, name=d.resolve().name or str(d), config=config)
    _read_metrics(run, d / "metrics.jsonl")
    run.frames = _frames(d / "samples")
    run.eval_json = _read_eval_json(d / "eval.json")
    return run


def _read_eval_json(path: Path) -> dict[str, Any] | None:
    # optional and written by another command: a broken one is left out, not an error
    try:
        found = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def _read_metrics(run: RunData, path: Path) -> None:
    # A run still training may have a half-written last line: skip what does not parse
    # and say how many, rather than refuse the whole report.
    if not path.is_file():
        return
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not _is_num(row.get("step")):
            run.skipped_lines += 1
        elif "warning" in row:
            run.warnings.append(row)
        elif any(k in row for k in LOSS_KEYS):
            run.train.append(row)
        else:
            run.evals.append(row)


def _frames(samples: Path) -> list[tuple[int | None, Path]]:
    if not samples.is_dir():
        return []
    found = []
    for p in samples.glob("*.png"):
        m = STEP_RE.search(p.stem)
        found.append((int(m.group(1)) if m else None, p))
    # by step, files without one last, by name
    found.sort(key=lambda sp: (sp[0] is None, sp[0] or 0, sp[1].name))
    return found


def subsample(n: int, k: int = MAX_FRAMES) -> list[int]:
    """At most ``k`` indices spread evenly over ``range(n)``, always the first and the last."""
    if n <= k:
        return list(range(n))
    if k <= 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _data_uri(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None  # a truncated or foreign file: leave it out rather than show a broken one
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float | None]]:
    """(step, value) for rows holding ``key``; None where the value is not a finite number."""
    out: list[tuple[float, float | None]] = []
    for r in rows:
        if key not in r:
            continue
        v = r[key]
        out.append((float(r["step"]), float(v) if _is_num(v) and math.isfinite(v) else None))
    return out


def _numeric_keys(rows: list[dict[str, Any]], skip: set[str]) -> list[str]:
    """Keys with at least one number, in order of first appearance."""
    keys: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k not in skip and _is_num(v) and not k.endswith("_std"):
                keys.setdefault(k, None)
    return list(keys)


# --- SVG charts ---------------------------------------------------------------------------


@dataclass
class Line:
    label: str
    colour: str
    points: list[tuple[float, float | None]]
    dashed: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(first, last + 1)]


def _tick_text(t: float) -> str:
    if abs(t) < 1e-12:
        return "0"
    if abs(t) >= 10_000 and float(t).is_integer():
        return f"{t / 1000:g}k"
    return f"{t:.4g}"


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def svg_chart(title: str, lines: Sequence[Line], marks: Sequence[tuple[float, str, str]] = (),
              width: int = 560, height: int = 250) -> str:
    """A line chart as inline SVG; hovering a point shows its value (native tooltips).

    ``marks`` are vertical lines (step, colour, tooltip), e.g. training-health warnings.
    Gaps (None values) break the line. Returns "" when there is nothing to draw.
    """
    pts = [(x, y) for ln in lines for x, y in ln.points if y is not None]
    if not pts:
        return ""
    left, right, top, bottom = 58, 14, 12, 30
    xt = _ticks(*_span([x for x, _ in pts] + [m[0] for m in marks]))
    yt = _ticks(*_span([y for _, y in pts]))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{_esc(title)}">']
    for t in yt:
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" '
                   f'y2="{sy(t):.1f}"/><text class="tick" x="{left - 6}" y="{sy(t) + 4:.1f}" '
                   f'text-anchor="end">{_tick_text(t)}</text>')
    for t in xt:
        out.append(f'<line class="grid" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" '
                   f'y2="{top + ph}"/><text class="tick" x="{sx(t):.1f}" y="{height - 10}" '
                   f'text-anchor="middle">{_tick_text(t)}</text>')
    for step, colour, tip in marks:
        out.append(f'<line class="mark" x1="{sx(step):.1f}" x2="{sx(step):.1f}" y1="{top}" '
                   f'y2="{top + ph}" stroke="{colour}"><title>{_esc(tip)}</title></line>')
    for ln in lines:
        points = ln.points
        if len(points) > MAX_PATH_POINTS:
            stride = math.ceil(len(points) / MAX_PATH_POINTS)
            points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
        d, pen_down = [], False
        for x, y in points:
            if y is None:
                pen_down = False
                continue
            d.append(f"{'L' if pen_down else 'M'}{sx(x):.1f} {sy(y):.1f}")
            pen_down = True
        dash = ' stroke-dasharray="6 4"' if ln.dashed else ""
        out.append(f'<path class="line" d="{" ".join(d)}" stroke="{ln.colour}"{dash}>'
                   f'<title>{_esc(ln.label)}</title></path>')
        finite = [(x, y) for x, y in ln.points if y is not None]
        # few points: always show the dots (an eval metric measured 3 times has no "line")
        cls = "pt on" if len(finite) <= 30 else "pt"
        for x, y in finite[::max(1, math.ceil(len(finite) / MAX_MARKERS))]:
            out.append(f'<circle class="{cls}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" '
                       f'fill="{ln.colour}"><title>{_esc(ln.label)}, iteration {x:.0f}: '
                       f'{y:.5g}</title></circle>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/></svg>')
    return "".join(out)


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


# --- page sections ------------------------------------------------------------------------


def _pair_chart(title: str, runs: list[RunData], keys: tuple[str, str], marks: bool) -> str:
    """Two related curves (D/G losses, D(x)/D(G(z))): by colour for one run; for several,
    colour is the run and solid/dashed tells the two apart."""
    lines, legend = [], []
    for i, run in enumerate(runs):
        for j, key in enumerate(keys):
            s = _series(run.train, key)
            if not s:
                continue
            if len(runs) == 1:
                colour, dashed, label = COLOURS[j], False, LABELS[key]
                legend.append((label, colour, dashed))
            else:
                colour, dashed = COLOURS[i % len(COLOURS)], j == 1
                label = f"{run.name}: {LABELS[key]}"
            lines.append(Line(label, colour, s, dashed))
    if len(runs) > 1:
        legend = [(f"{LABELS[k]} ({'dashed' if j else 'solid'})", "#444", j == 1)
                  for j, k in enumerate(keys)]
    warn_marks = []
    if marks:
        for i, run in enumerate(runs):
            colour = WARN_COLOUR if len(runs) == 1 else COLOURS[i % len(COLOURS)]
            for w in run.warnings:
                tip = f"{run.name}, iteration {w['step']}: {w.get('warning')}: " \
                      f"{w.get('message', '')}"
                warn_marks.append((float(w["step"]), colour, tip))
    return _figure(title, svg_chart(title, lines, warn_marks), legend)


def _key_charts(runs: list[RunData], rows_of: str, keys: list[str]) -> str:
    """One small chart per key, one line per run."""
    figs = []
    for key in keys:
        lines = [Line(run.name if len(runs) > 1 else LABELS.get(key, key),
                      COLOURS[i % len(COLOURS)], _series(getattr(run, rows_of), key))
                 for i, run in enumerate(runs)]
        title = LABELS.get(key, key)
        figs.append(_figure(title, svg_chart(title, [ln for ln in lines if ln.points],
                                             width=420, height=220)))
    return "".join(figs)


def _curves_section(runs: list[RunData]) -> str:
    has_warnings = any(r.warnings for r in runs)
    loss_title = "Losses" + (" (vertical lines: warnings)" if has_warnings else "")
    parts = [_pair_chart(loss_title, runs, LOSS_KEYS, marks=True),
             _pair_chart("Discriminator outputs", runs, D_KEYS, marks=False)]
    body = "".join(parts)
    extra = _key_charts(runs, "train",
                        _numeric_keys([r for run in runs for r in run.train],
                                      {"step", *LOSS_KEYS, *D_KEYS}))
    if not body and not extra:
        return _section("Training curves", '<p class="note">No training rows in '
                        "metrics.jsonl yet.</p>")
    more = f'<h3>Other training statistics</h3><div class="charts">{extra}</div>' if extra else ""
    return _section("Training curves", f'<div class="charts">{body}</div>{more}')


def _eval_section(runs: list[RunData]) -> str:
    keys = _numeric_keys([r for run in runs for r in run.evals], NOT_METRICS)
    if not keys:
        return ""
    return _section("Evaluation metrics",
                    f'<div class="charts">{_key_charts(runs, "evals", keys)}</div>')


def _histograms(run: RunData) -> list[tuple[str, dict[str, Any]]]:
    """(source, row) for the class histograms of metric ``classes``: the last one logged
    during training and the one in eval.json."""
    found = []
    last = next((r for r in reversed(run.evals) if isinstance(r.get("classes_hist"), list)), None)
    if last is not None:
        found.append(("metrics.jsonl", last))
    if run.eval_json and isinstance(run.eval_json.get("classes_hist"), list):
        found.append(("eval.json", run.eval_json))
    return found


def _classes_section(runs: list[RunData]) -> str:
    """Metric ``classes``: one row of bars per histogram, the tallest class full height."""
    rows = [(r, src, row) for r in runs for src, row in _histograms(r)]
    if not rows:
        return ""
    k = max(len(row["classes_hist"]) for _, _, row in rows)
    head = ("<th>run</th><th>from</th><th>iteration</th>"
            + "".join(f"<th>{c}</th>" for c in range(k))
            + "<th>covered</th><th>KL to uniform</th><th>confident</th>")
    body = []
    for r, src, row in rows:
        counts = [c if _is_num(c) else 0 for c in row["classes_hist"]]
        top = max(max(counts), 1)
        cells = "".join(
            f'<td><div class="bar" style="height:{round(40 * c / top)}px"></div>{_esc(c)}</td>'
            for c in counts) + "<td></td>" * (k - len(counts))
        stats = "".join(f"<td>{_esc(_num(row[key])) if _is_num(row.get(key)) else '—'}</td>"
                        for key in ("classes", "classes_kl", "classes_confident"))
        body.append(f"<tr><th>{_esc(r.name)}</th><td>{_esc(src)}</td>"
                    f"<td>{_esc(row.get('step', '—'))}</td>{cells}{stats}</tr>")
    return _section("Classes of the samples (metric classes)",
                    f'<table class="classes"><thead><tr>{head}</tr></thead>'
                    f'<tbody>{"".join(body)}</tbody></table>'
                    '<p class="note">samples per class under the dataset classifier; '
                    "confident: share with max softmax &ge; 0.9</p>")


def _final(rows: list[dict[str, Any]], key: str) -> tuple[Any, Any] | None:
    """The last numeric value of ``key`` and its step (NaN counts: a diverged run says so)."""
    for r in reversed(rows):
        if _is_num(r.get(key)):
            return r[key], r["step"]
    return None


def _differs(values: list[Any]) -> bool:
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def _row(key: str, cells: list[str], highlight: bool) -> str:
    """A table row: the key as header, ``cells`` already HTML."""
    cls = ' class="diff"' if highlight else ""
    return f"<tr{cls}><th>{_esc(key)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _machine(m: dict[str, Any]) -> str:
    parts = [m.get("gpu"), m.get("cpu"), m.get("torch") and f"torch {m['torch']}"]
    return ", ".join(str(p) for p in parts if p) or "—"


def _summary_section(runs: list[RunData]) -> str:
    head = "".join(f"<th>{_swatch(COLOURS[i % len(COLOURS)]) if len(runs) > 1 else ''}"
                   f"{_esc(r.name)}</th>" for i, r in enumerate(runs))
    rows: list[tuple[str, list[str]]] = [("folder", [_esc(r.dir) for r in runs])]
    shown = ("preset", "dataset", "model", "objective")
    for key in shown:
        rows.append((key, [_esc(_value(r.config.get(key, "—"))) for r in runs]))
    done = []
    for r in runs:
        last = max((row["step"] for row in r.train + r.evals), default=None)
        planned = r.config.get("steps", "?")
        done.append(_esc(f"{last if last is not None else 0:g} / {planned}"))
    rows.append(("iterations (logged / planned)", done))
    used = [r.config.get("data_used") if isinstance(r.config.get("data_used"), dict) else {}
            for r in runs]
    if any("wall_clock_s" in u for u in used):
        rows.append(("wall-clock time", [_esc(_duration(u.get("wall_clock_s"))) for u in used]))
    if any("machine" in u for u in used):
        rows.append(("machine", [_esc(_machine(u.get("machine") or {})) for u in used]))
    for key in (*LOSS_KEYS, *D_KEYS):
        vals = [_final(r.train, key) for r in runs]
        if any(vals):
            rows.append((f"final {LABELS[key]}", [_esc(_num(v[0])) if v else "—" for v in vals]))
    for key in _numeric_keys([row for r in runs for row in r.evals], NOT_METRICS):
        vals = [_final(r.evals, key) for r in runs]
        rows.append((f"final {key}", [
            f'{_esc(_num(v[0]))} <span class="at">@{_esc(v[1])}</span>' if v else "—"
            for v in vals]))
    rows.append(("warnings", [str(len(r.warnings)) for r in runs]))
    rows.append(("snapshots", [str(len(r.frames)) for r in runs]))
    diff = set()
    if len(runs) > 1:
        # what sets the runs apart, next to their results; `out` is the folder row already
        keys = dict.fromkeys(k for r in runs for k in r.config)
        diff = {k for k in keys if _differs([r.config.get(k) for r in runs])}
        diff -= {"out", *RECORD_KEYS}  # the folder row says `out`; data_used has a table
        rows += [(k, [_esc(_value(r.config.get(k, "—"))) for r in runs])
                 for k in keys if k in diff and k not in shown]
    body = "".join(_row(k, cells, k in diff) for k, cells in rows)
    title = "Summary" if len(runs) == 1 else "Runs side by side"
    return _section(title, f'<table class="summary"><thead><tr><th></th>{head}</tr></thead>'
                           f"<tbody>{body}</tbody></table>")


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


def _duration(seconds: Any) -> str:
    if not _is_num(seconds):
        return "—"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{seconds:.1f} s"


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


def _player(run: RunData, idx: int) -> str:
    frames = [run.frames[i] for i in subsample(len(run.frames))]
    data = [{"step": s, "src": uri} for s, p in frames if (uri := _data_uri(p))]
    if not data:
        return '<p class="note">No snapshots in samples/.</p>'
    # the player opens on the last snapshot, the one a person looks at first
    n, last = len(data), data[-1]
    label = "iteration " + (str(last["step"]) if last["step"] is not None else "?")
    # JSON inside <script>: "</" must not appear or it would end the element
    payload = json.dumps(data).replace("</", "<\\/")
    return f"""<div class="samples">
<figure class="player" data-frames="frames-{idx}">
<figcaption>Samples ({_esc(label)}, the last snapshot of {n})</figcaption>
<img class="frame" src="{last['src']}" alt="samples at {_esc(label)}">
<div class="controls"><button type="button" class="prev" title="previous">&#9664;</button>
<button type="button" class="play" title="play / pause">Play</button>
<button type="button" class="next" title="next">&#9654;</button>
<input type="range" class="slider" min="0" max="{n - 1}" value="{n - 1}" step="1"
 aria-label="snapshot">
<span class="frame-label">{_esc(label)} ({n}/{n})</span></div></figure>
<script type="application/json" id="frames-{idx}">{payload}</script></div>"""


def _warnings_table(run: RunData) -> str:
    if not run.warnings:
        return ""
    rows = "".join(f"<tr><td>{_esc(w['step'])}</td><td>{_esc(w.get('warning', ''))}</td>"
                   f"<td>{_esc(w.get('message', ''))}</td></tr>" for w in run.warnings)
    return (f'<h3 class="warn">Training-health warnings ({len(run.warnings)})</h3>'
            f'<table class="warnings"><thead><tr><th>iteration</th><th>kind</th>'
            f"<th>message</th></tr></thead><tbody>{rows}</tbody></table>")


def _run_section(run: RunData, idx: int, several: bool) -> str:
    note = ""
    if run.skipped_lines:
        note = (f'<p class="note">metrics.jsonl: {run.skipped_lines} unreadable '
                f"line(s) skipped.</p>")
    title = f"Samples: {run.name}" if several else "Samples"
    return _section(title, _player(run, idx) + _warnings_table(run) + note)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>{body}</section>"


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#222;background:#f6f7f9;margin:0}
main{max-width:1180px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:4px 0}h2{font-size:17px;margin:0 0 10px}h3{font-size:15px}
section{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:14px 16px;
 margin:14px 0}
.sub{color:#666;margin:0}.note{color:#666}.at{color:#999;font-size:12px}
table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #eee;
 text-align:left;vertical-align:top}thead th{border-bottom:2px solid #ddd}
table.summary td{font-variant-numeric:tabular-nums}table.summary th{white-space:nowrap}
table.config td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;
 overflow-wrap:anywhere}tr.diff{background:#fff4c2}
.config-cols{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
.config-cols table{flex:1 1 420px}
table.config.diffs-only tr:not(.diff){display:none}
table.config tr[data-unused]{display:none}
table.config.show-unused tr[data-unused]{display:table-row}
.changed{background:#d8ecff;font-weight:600}.was{color:#888;font-size:11.5px}
table.data-used td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;
 overflow-wrap:anywhere}
.charts{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0}figcaption{font-weight:600;margin-bottom:2px}
svg.chart{max-width:100%;height:auto;display:block}
.chart .grid{stroke:#eceef1}.chart .frame{fill:none;stroke:#bbb}
.chart .tick{font-size:11px;fill:#666}.chart .line{fill:none;stroke-width:1.8}
.chart .mark{stroke-width:1.5;stroke-dasharray:3 3;opacity:.7}
.chart .pt{opacity:0}.chart .pt.on{opacity:1;r:3}.chart .pt:hover{opacity:1;r:5}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:#444}
.legend span{white-space:nowrap}svg.swatch{vertical-align:middle}
.samples{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.samples figure{flex:1 1 380px;max-width:560px}.samples img{max-width:100%;height:auto;
 display:block;border:1px solid #e2e4e8;background:#fff}
.controls{display:flex;align-items:center;gap:6px;margin-top:6px}
.controls button{min-width:34px;padding:3px 8px}.controls .slider{flex:1}
.frame-label{font-variant-numeric:tabular-nums;color:#444;min-width:130px}
table.classes td{vertical-align:bottom;text-align:center;font-variant-numeric:tabular-nums}
table.classes .bar{width:14px;margin:0 auto 2px;background:#1f77b4}
h3.warn{color:#b02a1b}table.warnings td:first-child{font-variant-numeric:tabular-nums}
"""

JS = """
document.querySelectorAll('.player').forEach(function (p) {
  var frames = JSON.parse(document.getElementById(p.dataset.frames).textContent);
  var img = p.querySelector('img.frame'), slider = p.querySelector('.slider');
  var label = p.querySelector('.frame-label'), play = p.querySelector('.play');
  var i = frames.length - 1, timer = null;  // the page opens on the last snapshot
  function show(k) {
    i = (k + frames.length) % frames.length;
    img.src = frames[i].src;
    slider.value = i;
    label.textContent = 'iteration ' + frames[i].step + ' (' + (i + 1) + '/' + frames.length + ')';
  }
  function stop() { clearInterval(timer); timer = null; play.textContent = 'Play'; }
  play.addEventListener('click', function () {
    if (timer) { stop(); return; }
    if (i === frames.length - 1) show(0);
    play.textContent = 'Pause';
    timer = setInterval(function () {
      show(i + 1);
      if (i === frames.length - 1) stop();
    }, 250);
  });
  p.querySelector('.prev').addEventListener('click', function () { stop(); show(i - 1); });
  p.querySelector('.next').addEventListener('click', function () { stop(); show(i + 1); });
  slider.addEventListener('input', function () { stop(); show(+slider.value); });
});
document.querySelectorAll('.show-unused').forEach(function (box) {
  box.addEventListener('change', function () {
    document.querySelectorAll('table.config').forEach(function (t) {
      t.classList.toggle('show-unused', box.checked);
    });
  });
});
document.querySelectorAll('.only-diff').forEach(function (box) {
  box.addEventListener('change', function () {
    document.querySelectorAll('table.config').forEach(function (t) {
      t.classList.toggle('diffs-only', box.checked);
    });
  });
});
"""


def render(runs: list[RunData]) -> str:
    """The whole page for already-loaded runs."""
    from . import __version__

    several = len(runs) > 1
    title = "ganforge report: " + (runs[0].name if not several else f"{len(runs)} runs")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    legend = ""
    if several:
        legend = _legend([(r.name, COLOURS[i % len(COLOURS)], False)
                          for i, r in enumerate(runs)])
    body = [f"<header><h1>{_esc(title)}</h1><p class=\"sub\">"
            + _esc(", ".join(str(r.dir) for r in runs))
            + f" &middot; written {_esc(stamp)} by ganforge {_esc(__version__)}</p>"
            + legend + "</header>",
            _summary_section(runs), _curves_section(runs), _eval_section(runs),
            _classes_section(runs)]
    body += [_run_section(r, i, several) for i, r in enumerate(runs)]
    body += [_config_section(runs), _data_section(runs)]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_esc(title)}</title>'
            f"<style>{CSS}</style></head><body><main>{''.join(body)}</main>"
            f"<script>{JS}</script></body></html>\n")


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write one self-contained ``report.html`` about ``run_dirs`` and return its path.

    ``out`` defaults to ``RUN_DIR/report.html`` for one run and ``./report.html`` for several.
    """

    if not run_dirs:
        raise GanforgeError("report: no RUN_DIR given")
    runs = [load_run(d) for d in run_dirs]
    seen: dict[str, int] = {}
    for r in runs:  # two folders of the same name (sweeps, copies): keep the legend readable
        seen[r.name] = seen.get(r.name, 0) + 1
        if seen[r.name] > 1:
            r.name = f"{r.name} ({seen[r.name]})"
    path = Path(out) if out is not None else (
        runs[0].dir / "report.html" if len(runs) == 1 else Path("report.html"))
    if path.is_dir():
        raise GanforgeError(f"report output {path}: is a folder; expected an .html file path")
    check_out(path, [r.dir for r in runs])
    try:
        atomic_write_text(path, render(runs))
    except OSError as e:
        raise GanforgeError(f"report output {path}: cannot write ({e.strerror or e})") from e
    return path
