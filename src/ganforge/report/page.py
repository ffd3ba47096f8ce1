"""The run report page as a whole, and writing it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import GanforgeError
from ..files import atomic_write_text, check_out
from .assets import document, written
from .config_tables import _config_section, _data_section
from .parts import COLOURS, _esc, _legend
from .rundir import RunData, load_run
from .samples import _run_section
from .sections import _classes_section, _curves_section, _eval_section, _summary_section
from .sweep_data import is_sweep_dir
from .sweep_page import write_sweep_report


def render(runs: list[RunData]) -> str:
    """The whole page for already-loaded runs."""
    several = len(runs) > 1
    title = "ganforge report: " + (runs[0].name if not several else f"{len(runs)} runs")
    legend = ""
    if several:
        legend = _legend([(r.name, COLOURS[i % len(COLOURS)], False)
                          for i, r in enumerate(runs)])
    body = [f"<header><h1>{_esc(title)}</h1><p class=\"sub\">"
            + _esc(", ".join(str(r.dir) for r in runs))
            + f" &middot; {written()}</p>" + legend + "</header>",
            _summary_section(runs), _curves_section(runs), _eval_section(runs),
            _classes_section(runs)]
    body += [_run_section(r, i, several) for i, r in enumerate(runs)]
    body += [_config_section(runs), _data_section(runs)]
    return document(title, "".join(body))


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write one self-contained ``report.html`` about ``run_dirs`` and return its path.

    ``out`` defaults to ``RUN_DIR/report.html`` for one run and ``./report.html`` for several.
    One sweep folder (it has a sweep.json) gets the sweep's page, one row per run.
    """
    if not run_dirs:
        raise GanforgeError("report: no RUN_DIR given")
    if len(run_dirs) == 1 and is_sweep_dir(run_dirs[0]):
        return write_sweep_report(run_dirs[0], out)
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
