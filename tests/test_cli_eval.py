"""`ganforge eval --out FILE`, and ganforge's warnings as one-line messages on the console."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from ganforge.cli import main


def test_eval_out_writes_there_and_warnings_are_one_line(generator_runs, tmp_path, capsys):
    run = Path(generator_runs["mlp"])
    (run / "eval.json").unlink(missing_ok=True)
    out = tmp_path / "sub" / "metrics.json"
    # 50 raw 784-d vectors: FID warns (rank-deficient covariances), the case users hit first
    assert main(["eval", str(run), "--n", "50", "--features", "raw", "--metrics", "fid,kid",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    assert result["n"] == 50 and "fid" in result and f"wrote {out}" in captured.out
    assert not (run / "eval.json").exists()  # --out instead of the run folder, not as well
    lines = captured.err.splitlines()
    assert lines and all(ln.startswith("ganforge: warning: ") for ln in lines), lines
    assert len(lines) == len(set(lines))  # each said once
    assert "UserWarning" not in captured.err and ".py:" not in captured.err


def test_eval_out_folder_is_a_one_line_error(generator_runs, tmp_path, capsys):
    assert main(["eval", generator_runs["mlp"], "--n", "20", "--features", "raw",
                 "--metrics", "kid", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"ganforge: error: --out {tmp_path}: is a folder; expected a file such as " \
                  "eval.json\n"


def test_other_warnings_keep_their_display(capsys):
    from ganforge import cli

    shown = []
    show = cli._one_line_warning(lambda *a: shown.append(a))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        warnings.warn_explicit("from elsewhere", UserWarning, "/elsewhere/x.py", 3)
        warnings.warn_explicit("ours\n  twice", UserWarning, cli.__file__, 3)
        warnings.warn_explicit("ours twice", UserWarning, cli.__file__, 4)
    assert len(shown) == 1 and str(shown[0][0]) == "from elsewhere"
    assert capsys.readouterr().err == "ganforge: warning: ours twice\n"


@pytest.fixture(autouse=True)
def _no_leak():
    before = warnings.showwarning
    yield
    assert warnings.showwarning is before  # main() puts Python's display back
