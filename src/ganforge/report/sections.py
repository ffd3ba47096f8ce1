"""The run report's sections about results: summary table, curves, metrics, classes."""

from __future__ import annotations

from typing import Any

from .charts import _key_charts, _pair_chart
from .parts import (
    COLOURS,
    D_KEYS,
    LABELS,
    LOSS_KEYS,
    NOT_METRICS,
    RECORD_KEYS,
    _differs,
    _esc,
    _is_num,
    _num,
    _row,
    _section,
    _swatch,
    _value,
)
from .rundir import RunData, _final, _numeric_keys


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


def _machine(m: dict[str, Any]) -> str:
    parts = [m.get("gpu"), m.get("cpu"), m.get("torch") and f"torch {m['torch']}"]
    return ", ".join(str(p) for p in parts if p) or "—"


def _duration(seconds: Any) -> str:
    if not _is_num(seconds):
        return "—"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{seconds:.1f} s"


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
