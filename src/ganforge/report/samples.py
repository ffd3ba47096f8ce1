"""The snapshot player (inlined PNGs and a few lines of JavaScript) and the warnings table."""

from __future__ import annotations

import json

from .parts import _esc, _section
from .rundir import RunData, _data_uri, subsample


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
