"""ganforge report SWEEP_DIR: one row per run, the best run marked, every reading tolerant."""

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import closed_port_url

import ganforge
from ganforge.cli import main
from ganforge.report import SUMMARY_FORMAT, load_sweep, write_report

G_LRS = (0.001, 0.0002, 0.0005)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small real toy-1d run; every run folder of the sweeps here is a copy of it."""
    root = tmp_path_factory.mktemp("real")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANFORGE_CACHE", str(root / "cache"))
        mp.setenv("GANFORGE_MIRRORS", closed_port_url())
        mp.delenv("GANFORGE_DATA", raising=False)
        return ganforge.train(preset="toy-1d", steps=20, log_every=10, sample_every=10,
                              out=str(root / "toy"), progress=False).dir


def make_sweep(root: Path, real_run: Path, evals: list[list[float]],
               keep_best: str | None = "fid") -> Path:
    """A sweep folder by hand: run k has g_lr G_LRS[k], seed k and fid ``evals[k]`` at
    iterations 10, 20, ... (no summary.json: tests add their own)."""
    sweep = root / "sweep"
    sweep.mkdir()
    for k, fids in enumerate(evals):
        d = sweep / f"run-{k:03d}"
        shutil.copytree(real_run, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(seed=k, g_lr=G_LRS[k], out=str(d), keep_best=keep_best,
                   eval_every=10 if keep_best else 0, metrics=["fid", "precision"])
        (d / "config.json").write_text(json.dumps(cfg))
        with open(d / "metrics.jsonl", "a") as f:
            for i, fid in enumerate(fids):
                f.write(json.dumps({"step": 10 * (i + 1), "n": 100, "fid": fid,
                                    "precision": 0.5}) + "\n")
    base = {**json.loads((sweep / "run-000" / "config.json").read_text()), "seed": 0}
    (sweep / "sweep.json").write_text(json.dumps({
        "format": "ganforge-sweep-1", "runs": len(evals),
        "vary": {"g_lr": list(G_LRS[:len(evals)])}, "base": base}))
    return sweep


def summary(values: list[float | None], rank_by: str | None = "fid",
            best_run: int | None = None, metric: str = "fid") -> dict:
    runs = []
    for k, v in enumerate(values):
        runs.append({"run": k, "dir": f"run-{k:03d}", "seed": k, "varied": {"g_lr": G_LRS[k]},
                     "status": "complete" if k != 2 else "stopped (SIGTERM)", "step": 20,
                     "final": {"d_loss": 1.25 + k, "g_loss": 0.75, "d_real": 0.5},
                     "best": {metric: v} if v is not None else None,
                     "metrics": {metric: v + 1} if v is not None else {}})
    return {"format": SUMMARY_FORMAT, "vary": {"g_lr": list(G_LRS)}, "rank_by": rank_by,
            "best_run": best_run, "runs": runs}


def write_summary(sweep: Path, record: dict) -> None:
    (sweep / "summary.json").write_text(json.dumps(record))


def rows_of(page: str) -> dict[int, tuple[bool, list[str]]]:
    """run -> (marked best, the cells' text) for the runs table."""
    table = page[page.index('<table class="sweep">'):]
    table = table[:table.index("</table>")]
    out = {}
    for cls, run, cells in re.findall(r'<tr( class="best")? data-run="(\d+)">(.*?)</tr>',
                                      table):
        text = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                for c in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
        out[int(run)] = (bool(cls), text)
    return out


def best_of(page: str) -> list[int]:
    return [k for k, (best, _) in rows_of(page).items() if best]


def test_summary_gives_one_row_per_run_and_the_lowest_fid_is_best(real_run, tmp_path, capsys):
    sweep = make_sweep(tmp_path, real_run, [[14.0, 13.0]] * 3)
    write_summary(sweep, summary([12.5, 9.25, 11.0], best_run=1))
    (sweep / "run-000" / "report.html").write_text("<html></html>")
    out = write_report([sweep])
    assert out == sweep / "report.html"
    assert capsys.readouterr().err == ""  # everything read cleanly: no warnings
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "ganforge sweep report: sweep" in page
    assert "http://" not in page and "https://" not in page
    rows = rows_of(page)
    assert sorted(rows) == [0, 1, 2]
    head = page[page.index('<table class="sweep">'):page.index("</thead>")]
    cols = re.findall(r"<th>(.*?)</th>", head)
    assert cols[:5] == ["run", "seed", "g_lr", "status", "iterations"]
    for k, (_, cells) in rows.items():
        assert cells[0].startswith(f"run-{k:03d}") and cells[1] == str(k)
        assert cells[2] == f"{G_LRS[k]:g}" and cells[4] == "20"
        assert cells[cols.index("final D loss")] == f"{1.25 + k:g}"
    assert rows[2][1][3] == "stopped (SIGTERM)" and rows[0][1][3] == "complete"
    ranked = cols.index("fid (lowest wins)")
    assert [rows[k][1][ranked] for k in range(3)] == ["12.5", "9.25", "11"]  # best, not last
    assert [rows[k][1][cols.index("last fid")] for k in range(3)] == ["13.5", "10.25", "12"]
    assert best_of(page) == [1] and rows[1][1][0] == "run-001 best"
    assert "Best run: <b>run-001</b>, by lowest fid (9.25)." in page
    # each run's latest sample grid is on the page; a run's own report is linked
    assert page.count('<article class="card') == 3 and '<article class="card best" id="run-001"' \
        in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 3
    assert '<a href="run-000/report.html">report</a>' in page
    assert "ganforge report " + str(sweep / "run-001") in page  # no own page yet: how to


@pytest.mark.parametrize("metric, values, best", [
    ("fid", [3.0, 9.25, 11.0], 0),
    ("fid", [12.5, 9.25, 1.0], 2),
    ("fid", [None, 7.0, None], 1),  # a run without the metric never wins
    ("precision", [0.5, 0.25, 0.75], 2),  # higher is better
    ("precision", [0.875, 0.25, 0.75], 0),
    ("kid", [0.5, 0.25, 0.75], 1),
])
def test_the_best_run_marking_follows_the_values(real_run, tmp_path, metric, values, best):
    sweep = make_sweep(tmp_path, real_run, [[14.0]] * 3)
    write_summary(sweep, summary(values, rank_by=metric, best_run=best, metric=metric))
    page = write_report([sweep]).read_text()
    assert best_of(page) == [best]
    direction = "highest" if metric == "precision" else "lowest"
    assert f"Best run: <b>run-{best:03d}</b>, by {direction} {metric}" in page


def test_a_summary_that_names_another_best_run_is_corrected_with_a_warning(real_run, tmp_path,
                                                                          capsys):
    sweep = make_sweep(tmp_path, real_run, [[14.0]] * 3)
    write_summary(sweep, summary([12.5, 9.25, 11.0], best_run=0))
    page = write_report([sweep]).read_text()
    assert best_of(page) == [1]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "says best_run 0, but by fid it is run 1" in err


def test_without_a_ranking_metric_no_run_is_marked(real_run, tmp_path):
    sweep = make_sweep(tmp_path, real_run, [[14.0], [2.0]], keep_best=None)
    write_summary(sweep, summary([12.5, 9.25], rank_by=None))
    page = write_report([sweep]).read_text()
    assert best_of(page) == [] and 'class="badge"' not in page
    assert "No best run marked: the sweep ranks its runs by no metric" in page
    assert "keep_best" in page and "(lowest wins)" not in page
    write_summary(sweep, summary([None, None], rank_by="fid"))
    page = write_report([sweep]).read_text()
    assert best_of(page) == [] and "No best run marked: no run has a finite fid value" in page


def test_without_summary_the_run_folders_are_read(real_run, tmp_path, capsys):
    # run 0's best fid came early (5.0) and is the best of all though its last (9.0) is not
    sweep = make_sweep(tmp_path, real_run, [[5.0, 9.0], [7.0, 6.0], [8.0, 7.5]])
    page = write_report([sweep]).read_text()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("ganforge: warning: ")
    assert "summary.json: not found; reading each run folder's config.json" in err[0]
    assert "rows from the run folders" in page and "summary.json: not found" in page
    rows = rows_of(page)
    assert sorted(rows) == [0, 1, 2]
    cfg = json.loads((sweep / "run-001" / "config.json").read_text())
    finals = [json.loads(ln) for ln in (sweep / "run-001" / "metrics.jsonl").read_text()
              .splitlines() if "d_loss" in ln]
    for k, (_, cells) in rows.items():
        assert cells[1:5] == [str(k), f"{G_LRS[k]:g}", "complete", "20"]
    assert rows[1][1][5] == f"{finals[-1]['d_loss']:.4g}" and cfg["steps"] == 20
    head = page[page.index('<table class="sweep">'):page.index("</thead>")]
    cols = re.findall(r"<th>(.*?)</th>", head)
    assert [rows[k][1][cols.index("fid (lowest wins)")] for k in range(3)] == ["5", "6", "7.5"]
    assert [rows[k][1][cols.index("last fid")] for k in range(3)] == ["9", "6", "7.5"]
    assert best_of(page) == [0]
    # the values move: the marking moves with them
    with open(sweep / "run-002" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 30, "n": 100, "fid": 4.0}) + "\n")
    assert best_of(write_report([sweep]).read_text()) == [2]


@pytest.mark.parametrize("text, why", [
    ("{oops", "not valid JSON"),
    ('{"format": "something-else", "runs": []}', 'not a "ganforge-sweep-summary-1" record'),
    (json.dumps({"format": SUMMARY_FORMAT, "runs": "all"}), '"runs" is not a list'),
    (json.dumps({"format": SUMMARY_FORMAT, "runs": [1, 2]}), "runs[0] is not a JSON object"),
    ("[" * 100_000, "nested too deeply"),
])
def test_an_unreadable_summary_falls_back_to_the_folders(real_run, tmp_path, capsys, text,
                                                         why):
    sweep = make_sweep(tmp_path, real_run, [[5.0], [3.0]])
    (sweep / "summary.json").write_text(text)
    assert main(["report", str(sweep)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"summary.json: {why}" in err and "; reading each run folder's config.json" in err
    page = (sweep / "report.html").read_text()
    assert sorted(rows_of(page)) == [0, 1] and best_of(page) == [1]


def test_broken_run_folders_and_sweep_json_give_warnings_not_tracebacks(real_run, tmp_path,
                                                                        capsys):
    sweep = make_sweep(tmp_path, real_run, [[5.0], [3.0], [4.0]])
    (sweep / "run-000" / "metrics.jsonl").unlink()  # a run that logged nothing
    with open(sweep / "run-001" / "metrics.jsonl", "a") as f:
        f.write('{"step": 3')  # killed mid-write
    (sweep / "run-002" / "config.json").write_text("{broken")
    (sweep / "sweep.json").write_text("{also broken")
    shutil.rmtree(sweep / "run-001" / "samples")
    assert main(["report", str(sweep)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "Traceback" not in "\n".join(err) and err
    assert all(ln.startswith("ganforge: warning: ") for ln in err)
    joined = "\n".join(err)
    for what in ("sweep.json: not valid JSON", "run-002: config.json is not valid JSON",
                 "run-001/metrics.jsonl: 1 unreadable line(s) skipped",
                 "run-000: no rows in metrics.jsonl", "summary.json: not found"):
        assert what in joined, what
    page = (sweep / "report.html").read_text()
    rows = rows_of(page)
    assert sorted(rows) == [0, 1, 2]
    # sweep.json is lost, but what varied is still seen in the run folders' configs
    assert rows[1][1][2] == f"{G_LRS[1]:g}" and rows[0][1][2] == f"{G_LRS[0]:g}"
    assert rows[0][1][3] == "not started"  # a final checkpoint, but nothing logged
    assert rows[2][1][3].startswith("unreadable: config.json is not valid JSON")
    assert best_of(page) == [1]  # the torn line costs run 1 nothing it had written whole
    assert "run folder unreadable" in page and "No snapshots in samples/" in page
    assert "Read with 5 warning(s)" in page

    # a broken summary.json entry value is shown as it is, not trusted as a number
    record = summary([12.5, 9.25, 11.0], best_run=1)
    record["runs"][0].update(step="soon", final=[1], best={"fid": "low"}, varied=None)
    write_summary(sweep, record)
    page = write_report([sweep]).read_text()
    assert best_of(page) == [1] and rows_of(page)[0][1][4] == "soon"


def test_an_empty_sweep_folder_is_a_one_line_error(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text('{"format": "ganforge-sweep-1", "runs": 2}')
    assert main(["report", str(sweep)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"ganforge: error: SWEEP_DIR {sweep}: no run-NNN folders and no readable summary.json; "
        "nothing to report"]


def test_cli_routes_a_sweep_folder_and_out_keeps_links_working(real_run, tmp_path, capsys):
    sweep = make_sweep(tmp_path, real_run, [[5.0], [3.0]])
    write_summary(sweep, summary([5.0, 3.0], best_run=1))
    (sweep / "summary.csv").write_text("run,fid\n0,5\n1,3\n")
    (sweep / "run-001" / "report.html").write_text("<html></html>")
    out = tmp_path / "pages" / "sweep.html"
    assert main(["report", str(sweep), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert "ganforge sweep report" in page and best_of(page) == [1]
    assert '<a href="../sweep/run-001/report.html">report</a>' in page
    assert '<a href="../sweep/summary.csv">summary.csv</a>' in page
    # the sweep's own files are not an output
    assert main(["report", str(sweep), "--out", str(sweep / "summary.json")]) == 2
    assert "is the file being read" in capsys.readouterr().err
    # a sweep folder among run folders: said in one line, not "no config.json"
    assert main(["report", str(sweep), str(real_run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"RUN_DIR {sweep}: a sweep folder (sweep.json)" in err
    assert load_sweep(sweep).source == "summary.json"
