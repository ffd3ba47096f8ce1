"""The pages' inline stylesheet and script, and the HTML document around a page's body."""

from __future__ import annotations

import datetime

from .parts import _esc

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


def written() -> str:
    """The header's "written ... by ganforge ..." note."""
    from ..version import __version__

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"written {_esc(stamp)} by ganforge {_esc(__version__)}"


def document(title: str, body: str, extra_css: str = "") -> str:
    """A whole page: ``body`` (HTML) with the stylesheet (and ``extra_css``) and the script
    inline."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_esc(title)}</title>'
            f"<style>{CSS}{extra_css}</style></head><body><main>{body}</main>"
            f"<script>{JS}</script></body></html>\n")
