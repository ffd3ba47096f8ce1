"""One self-contained HTML page about one or several run folders, or about a sweep.

Everything the page shows is inside the file: charts are inline SVG drawn here, pictures are
base64 data URIs, the snapshot player is a few lines of inline JavaScript. The page can be
mailed, archived or opened offline and never fetches anything.

The modules: ``rundir`` reads a run folder tolerantly, ``charts`` draws the SVG, ``sections``,
``config_tables`` and ``samples`` are the run page's parts, ``page`` puts one run page
together; ``sweep_data`` reads a sweep folder and ``sweep_page`` writes its one-row-per-run
page.
"""

from __future__ import annotations

from .charts import Line, svg_chart
from .page import render, write_report
from .relevance import MATTERS_WHEN, matters, preset_values
from .rundir import MAX_FRAMES, RunData, load_run, subsample
from .sweep_data import SUMMARY_FORMAT, SweepData, SweepRow, is_sweep_dir, load_sweep, pick_best
from .sweep_page import render_sweep, write_sweep_report

__all__ = ["MATTERS_WHEN", "MAX_FRAMES", "SUMMARY_FORMAT", "Line", "RunData", "SweepData",
           "SweepRow", "is_sweep_dir", "load_run", "load_sweep", "matters", "pick_best",
           "preset_values", "render", "render_sweep", "subsample", "svg_chart",
           "write_report", "write_sweep_report"]
