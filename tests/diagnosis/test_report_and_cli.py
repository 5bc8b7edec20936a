"""The report files, the command line (table, --fix, bad input as one line with exit 2) and the HTML
page in a real browser (headless Chromium, when installed)."""

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pyrovae.api import train
from pyrovae.config import load_config
from tests.cli.cli_helpers import assert_one_error_line, invoke

VOID = {"meta", "img", "br", "hr", "link", "input"}


@pytest.fixture(scope="module")
def sphere_run(tmp_path_factory):
    """A VAE on Berger & Sebag's sphere with σ fixed above R/√D: a certain failure, cheap to train."""
    out = tmp_path_factory.mktemp("report") / "sphere"
    train(load_config(model="vae", dataset="sphere", n=100, algorithm="fixed", sigma0=0.8, max_steps=100), out=out,
          plots=False)
    return out


@pytest.fixture(scope="module")
def reported(sphere_run):
    result = invoke("diagnose", sphere_run, "--max-points", "100")
    assert result.exit_code == 0, result.output
    return result, sphere_run / "diagnosis"


class _Checker(HTMLParser):
    """Balanced tags, and every image inline (no file or network resource)."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def test_terminal_table_and_three_report_files(reported):
    result, report = reported
    assert "decoder σ vs R/√D" in result.output and "failure" in result.output
    assert "pyrovae train --model vae --dataset sphere" in result.output  # the top remedy's command
    summary = json.loads((report / "diagnosis.json").read_text())
    checks = [f["check"] for f in summary["findings"]]
    assert checks == ["posterior collapse", "decoder σ vs its optimum", "decoder σ vs R/√D", "posterior mismatch",
                      "ELBO vs log-likelihood", "data vs samples"]
    assert summary["verdict"] == "failure" and summary["top_remedy"]["command"].startswith("pyrovae train")
    for f in summary["findings"]:
        assert f["verdict"] in ("ok", "warning", "failure") and f["threshold"] and f["source"]
    markdown = (report / "diagnosis.md").read_text()
    assert "| check | verdict | number | threshold | source |" in markdown and "Berger & Sebag 2020" in markdown


def test_html_is_self_contained_and_well_formed(reported):
    _, report = reported
    page = (report / "diagnosis.html").read_text()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.external == []
    assert len(checker.images) == 4  # trajectories, KL bars, q against the posterior, data against samples
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_html_opens_in_headless_chromium(reported, tmp_path):
    _, report = reported
    shot = tmp_path / "page.png"
    run = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--window-size=1100,2000", f"--screenshot={shot}", (report / "diagnosis.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a page with figures, not a blank one
    assert "CONSOLE" not in run.stderr and "net::ERR" not in run.stderr


def test_fix_trains_the_top_remedy_and_shows_before_and_after(sphere_run):
    result = invoke("diagnose", sphere_run, "--fix", "--quiet", "--max-points", "100")
    assert result.exit_code == 0, result.output
    fixed = sphere_run.parent / "sphere-fix-calibrate"
    assert json.loads((fixed / "config.json").read_text())["algorithm"] == "calibrated"
    assert (fixed / "diagnosis" / "diagnosis.html").is_file()
    assert "before / after the remedy" in result.output


@pytest.fixture
def tiny_run(tmp_path):
    out = tmp_path / "tiny"
    train(load_config(n=20, max_steps=2, K=1), out=out, plots=False)
    return out


def test_bad_input_is_one_line(tmp_path, tiny_run):
    assert_one_error_line(invoke("diagnose", tmp_path / "missing"), "not a run directory", "no such directory")
    (tmp_path / "file.txt").write_text("x")
    assert_one_error_line(invoke("diagnose", tmp_path / "file.txt"), "not a run directory", "a file")
    (tmp_path / "empty").mkdir()
    assert_one_error_line(invoke("diagnose", tmp_path / "empty"), "no config.json")
    no_checkpoint = tmp_path / "config-only"
    no_checkpoint.mkdir()
    shutil.copy(tiny_run / "config.json", no_checkpoint / "config.json")
    assert_one_error_line(invoke("diagnose", no_checkpoint), "has no checkpoint")


def test_a_run_of_an_unknown_model_is_one_line(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    config["model"] = "flow"
    (tiny_run / "config.json").write_text(json.dumps(config))
    assert_one_error_line(invoke("diagnose", tiny_run), "unknown model 'flow'")


def test_a_truncated_checkpoint_is_one_line(tiny_run):
    state = Path(tiny_run) / "checkpoint" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    assert_one_error_line(invoke("diagnose", tiny_run), "damaged checkpoint")


def test_python_api_raises_the_same_errors(tmp_path):
    import pyrovae
    from pyrovae.errors import DataError

    with pytest.raises(DataError, match="not a run directory"):
        pyrovae.diagnose(tmp_path / "missing")


def test_demo_ends_with_where_its_diagnosis_is(tmp_path, monkeypatch):
    import pyrovae.cli.demo as demo

    monkeypatch.setattr(demo, "DEMO_SETTINGS", {**demo.DEMO_SETTINGS, "n": 60, "max_steps": 10, "K": 5})
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    last = [line for line in result.output.splitlines() if line.strip()][-1]
    assert "diagnosis" in last and (out / "diagnosis" / "diagnosis.html").is_file()
