"""ganforge report: one self-contained HTML page, read as text and rendered in real Chromium."""

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import closed_port_url
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.report import MAX_FRAMES, subsample, write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
EXTRA_ROWS = [  # what evaluation and the training-health checks append, plus oddities
    {"step": 30, "n": 200, "fid": 4.5, "kl": 0.25, "kid_std": 0.01, "note": "text"},
    {"step": 60, "n": 200, "fid": 2.25, "kl": 0.125},
    {"step": 40, "warning": "d_saturated", "message": "D(x) > 0.99 for 20 iterations <b>&"},
    {"step": 50, "warning": "nan_loss", "message": "g_loss is NaN", "unknown": [1, 2]},
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A toy-1d run (with eval and warning rows added) and a tiny MNIST run, made once."""
    root = tmp_path_factory.mktemp("runs")
    # the autouse isolated_cache fixture is per test; a module fixture isolates itself
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANFORGE_CACHE", str(root / "cache"))
        mp.setenv("GANFORGE_MIRRORS", closed_port_url())
        mp.delenv("GANFORGE_DATA", raising=False)
        toy = ganforge.train(preset="toy-1d", steps=60, out=str(root / "toy"), progress=False,
                             sample_every=10, log_every=10).dir
        img = ganforge.train(preset="mlp-mnist", steps=20, out=str(root / "mnist"),
                             progress=False, sample_every=10, log_every=10).dir
    with open(toy / "metrics.jsonl", "a") as f:
        for row in EXTRA_ROWS:
            f.write(json.dumps(row) + "\n")
        f.write('{"step": 70, "d_loss": NaN, "g_loss": "n/a", "grad_norm_d": 1.5}\n')
        f.write('{"step": 7')  # a run killed mid-write
    return toy, img


def frames_of(page: str, idx: int = 0) -> list[dict]:
    m = re.search(rf'<script type="application/json" id="frames-{idx}">(.*?)</script>', page,
                  re.S)
    assert m, f"no player #{idx}"
    return json.loads(m.group(1))


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert not re.search(r"url\(|@import|<link[^>]+stylesheet", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "data:image/png;base64," in page


def test_one_run_report_holds_everything_inline(runs):
    toy, _ = runs
    out = write_report([toy])
    assert out == toy / "report.html"
    page = out.read_text()
    assert_self_contained(page)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")

    cfg = json.loads((toy / "config.json").read_text())
    for key in ("preset", "dataset", "z_dim", "g_lr", "steps", "batch_size", "objective"):
        value = cfg[key] if isinstance(cfg[key], str) else json.dumps(cfg[key])
        # a value the run changed from its preset is marked, the rest shown plain
        assert re.search(rf'<th>{key}</th><td>(<span class="changed"[^>]*>)?'
                         rf"{re.escape(html.escape(value))}(</span>)?", page), key

    frames = frames_of(page)
    assert [f["step"] for f in frames] == [0, 10, 20, 30, 40, 50, 60]
    assert all(f["src"].startswith("data:image/png;base64,") for f in frames)
    assert "Samples (iteration 60, the last snapshot of 7)" in page
    # the player opens on the last snapshot: its picture, slider and label
    player = page[page.index('<figure class="player"'):page.index('<script type="application')]
    assert f'src="{frames[-1]["src"]}"' in player and 'value="6"' in player
    assert "iteration 60 (7/7)" in player and frames[0]["src"] not in player

    for title in ("Losses", "Discriminator outputs", "Evaluation metrics", "grad_norm_d"):
        assert title in page
    assert page.count('<svg class="chart"') >= 6  # losses, D, it_s, grad_norm_d, fid, kl
    assert "kid_std" not in page and ">n<" not in page  # bookkeeping, not metrics
    assert "Training-health warnings (2)" in page and "nan_loss" in page
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page  # messages are escaped
    assert "1 unreadable line(s) skipped" in page
    assert page.count('class="mark"') == 2  # warnings drawn on the loss chart


def test_player_keeps_at_most_max_frames_and_always_the_last(runs, tmp_path):
    assert subsample(5) == [0, 1, 2, 3, 4]
    idx = subsample(457)
    assert len(idx) == MAX_FRAMES and idx[0] == 0 and idx[-1] == 456
    assert idx == sorted(set(idx))

    run = tmp_path / "long"
    shutil.copytree(runs[0], run)
    one = run / "samples" / "step-0000060.png"
    for step in range(70, 70 + 10 * 450, 10):
        shutil.copy(one, run / "samples" / f"step-{step:07d}.png")
    page = write_report([run], tmp_path / "long.html").read_text()
    steps = [f["step"] for f in frames_of(page)]
    assert len(steps) == MAX_FRAMES and steps[0] == 0 and steps[-1] == 4560
    assert f"iteration 4560 ({MAX_FRAMES}/{MAX_FRAMES})" in page


def test_several_runs_are_overlaid_and_compared(runs, tmp_path, monkeypatch):
    toy, img = runs
    page = write_report([toy, img], tmp_path / "cmp.html").read_text()
    assert_self_contained(page)
    assert "Runs side by side" in page and "ganforge report: 2 runs" in page
    table = page[page.index('<table class="summary">'):]
    table = table[:table.index("</table>")]
    assert "<th>preset</th><td>toy-1d</td><td>mlp-mnist</td>" in table.replace(
        '<tr class="diff">', "<tr>")
    assert '<tr class="diff"><th>preset</th>' in table  # differing keys are highlighted
    assert '<tr class="diff"><th>z_dim</th>' in table
    assert "<th>seed</th>" not in table  # equal keys stay in the full config only
    assert "final D loss" in table and "final fid" in table
    assert '<tr class="diff"><th>g_hidden</th><td>32</td><td>128</td>' in page
    assert len(frames_of(page, 0)) == 7 and len(frames_of(page, 1)) == 3
    assert "Samples: toy" in page and "Samples: mnist" in page
    # one colour per run: both runs' curves are in the loss chart
    losses = page[page.index("Losses"):page.index("Discriminator outputs")]
    assert "toy: D loss" in losses and "mnist: G loss" in losses

    monkeypatch.chdir(tmp_path)
    assert write_report([toy, toy]) == Path("report.html")
    assert "toy (2)" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("make, expected", [
    (lambda d: None, "no such folder"),
    (lambda d: d.write_text("x"), "not a folder"),
    (lambda d: d.mkdir(), "not a ganforge run folder (no config.json)"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{oops")),
     "config.json is not valid JSON"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("[1, 2]")),
     "config.json does not hold a JSON object"),
])
def test_bad_run_dirs_are_one_line_errors(tmp_path, make, expected):
    d = tmp_path / "x"
    make(d)
    with pytest.raises(GanforgeError) as e:
        write_report([d])
    msg = str(e.value)
    assert msg.startswith(f"RUN_DIR {d}: ") and expected in msg and "\n" not in msg


def test_report_to_a_folder_is_an_error(runs, tmp_path):
    with pytest.raises(GanforgeError, match="is a folder; expected an .html file"):
        write_report([runs[0]], tmp_path)


def test_cli_report(runs, tmp_path, capsys):
    toy, img = runs
    out = tmp_path / "sub" / "both.html"
    assert main(["report", str(toy), str(img), "--out", str(out)]) == 0
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out
    assert main(["report", str(img)]) == 0
    assert (img / "report.html").is_file()

    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"ganforge: error: RUN_DIR {tmp_path / 'empty'}: not a ganforge run")


def test_report_renders_in_headless_chromium(runs, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    toy, img = runs
    report = write_report([toy, img], tmp_path / "report.html")
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            # anything leaving the machine is both recorded and refused
            context.route(re.compile(r"^(https?|wss?|ftp)://"), lambda route: route.abort())
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")

            player = page.locator(".player").first
            label, frame = player.locator(".frame-label"), player.locator("img.frame")
            assert label.inner_text() == "iteration 60 (7/7)"  # opens on the last
            assert frame.get_attribute("src") == frames_of(report.read_text())[-1]["src"]
            player.locator("button.next").click()  # wraps round to the first
            assert label.inner_text() == "iteration 0 (1/7)"
            src0 = frame.get_attribute("src")
            player.locator("button.next").click()
            assert label.inner_text() == "iteration 10 (2/7)"
            assert frame.get_attribute("src") != src0
            player.locator("button.play").click()  # plays on from frame 2 to the end
            page.wait_for_function(
                "() => document.querySelector('.player .frame-label').textContent"
                ".startsWith('iteration 60 (7/7)')", timeout=10_000)
            assert player.locator("button.play").inner_text() == "Play"  # stopped at the end
            player.locator(".slider").fill("3")
            assert label.inner_text() == "iteration 30 (4/7)"

            visible = page.locator("table.config tbody tr:visible")
            n_all = visible.count()
            page.locator(".only-diff").check()
            assert 0 < visible.count() < n_all
            page.locator(".only-diff").uncheck()
            assert visible.count() == n_all
            page.locator(".show-unused").check()  # fields without effect: hidden until asked
            assert visible.count() > n_all
            assert page.locator("table.data-used tbody tr:visible").count() >= 5

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert shot.stat().st_size > 100_000
    im = Image.open(shot).convert("RGB")
    assert im.width == 1280 and im.height > 2000
    assert len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 100  # not a blank page


def marked(page: str) -> set[str]:
    return set(re.findall(r'<th>([a-z_0-9]+)</th><td><span class="changed"', page))


def test_config_json_records_machine_and_wall_clock(runs):
    import platform

    import torch

    used = json.loads((runs[0] / "config.json").read_text())["data_used"]
    assert used["machine"]["torch"] == torch.__version__
    assert used["machine"]["python"] == platform.python_version()
    assert used["machine"]["cpu"] and used["machine"]["cpu_count"] >= 1
    assert 0 < used["wall_clock_s"] < 600 and used["ended"]


def test_report_shows_data_used_time_machine_and_what_matters(runs, tmp_path):
    toy, img = runs
    page = write_report([toy], tmp_path / "one.html").read_text()
    used = json.loads((toy / "config.json").read_text())["data_used"]
    data = page[page.index("<h2>Data and machine</h2>"):]
    assert f"<th>machine.cpu</th><td>{html.escape(used['machine']['cpu'])}</td>" in data
    assert f"<th>dataset</th><td>{used['dataset']}</td>" in data
    assert "<th>device</th><td>cpu</td>" in data
    summary = page[page.index('<table class="summary">'):page.index("<h2>Training curves")]
    assert "<th>wall-clock time</th>" in summary and f"torch {used['machine']['torch']}" in summary
    assert '"data_used"' not in page and "<th>data_used</th>" not in page  # a table, not JSON
    # fields that do nothing in this run (toy-1d: minimax, no eval, no rollback) are hidden
    config = page[page.index("<h2>Configuration</h2>"):page.index("<h2>Data and machine")]
    for key in ("gp_lambda", "clip", "began_gamma", "image_size", "eval_n", "max_rollbacks"):
        assert f'<tr data-unused="1"><th>{key}</th>' in config, key
    for key in ("toy_means", "toy_stds", "objective", "g_lr", "steps"):
        assert f"<tr><th>{key}</th>" in config, key
    # the fixture trained toy-1d with steps=60, sample_every=10, log_every=10
    assert marked(config) == {"steps", "sample_every", "log_every"}
    assert "3 value(s) differ from the preset" in config
    mnist = write_report([img], tmp_path / "img.html").read_text()
    assert '<tr data-unused="1"><th>toy_means</th>' in mnist


def test_report_marks_values_that_differ_from_the_preset(runs, tmp_path):
    run = tmp_path / "edited"
    shutil.copytree(runs[0], run)
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(g_lr=0.5, batch_size=7)  # toy-1d sets 1e-3 and 256
    (run / "config.json").write_text(json.dumps(cfg))
    page = write_report([run]).read_text()
    assert '<span class="changed" title="preset toy-1d: 0.001">0.5</span>' in page
    assert '<span class="changed" title="preset toy-1d: 256">7</span>' in page
    assert marked(page) == {"g_lr", "batch_size", "steps", "sample_every", "log_every"}


def test_class_histograms_from_training_and_eval_json(runs, tmp_path):
    run = tmp_path / "mnist"
    shutil.copytree(runs[1], run)
    row = {"step": 20, "n": 100, "classes": 2, "classes_kl": 1.2, "classes_confident": 0.75,
           "classes_hist": [80, 0, 0, 20, 0, 0, 0, 0, 0, 0], "classes_min_count": 1,
           "n_classes": 10}
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    (run / "eval.json").write_text(json.dumps({**row, "classes_hist": [10] * 10, "classes": 10}))
    page = write_report([run]).read_text()
    table = page[page.index('<table class="classes">'):]
    table = table[:table.index("</table>")]
    assert "Classes of the samples" in page and table.count("<tr>") == 3  # head + 2 sources
    assert "<td>metrics.jsonl</td><td>20</td>" in table and "<td>eval.json</td>" in table
    # bars scaled to the tallest class of their own histogram: 80 -> 40 px, 20 -> 10 px
    assert '<div class="bar" style="height:40px"></div>80</td>' in table
    assert '<div class="bar" style="height:10px"></div>20</td>' in table
    assert table.count('style="height:40px"></div>10</td>') == 10
    assert ">classes_min_count<" not in page  # bookkeeping is not charted
    (run / "eval.json").write_text("{broken")
    assert write_report([run]).read_text().count("<td>eval.json</td>") == 0
