"""The HTML run report on a real run (emulated boards, judged against a baseline run, after a sweep and
earlier nights): one self-contained file in the morning's reading order, every run string escaped, and
rendered by a real browser (headless Chromium).

docs/report.png is this test's screenshot: `HIL_REPORT_SCREENSHOT=docs/report.png pytest
tests/emulated/test_htmlreport.py -k chromium` writes it there (docs/report.md)."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from PIL import Image

from hil.report.html import REPORT_HTML, write_report

from tests.support.labs import hil, write_lab

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS = 0
SAMPLES = 12
PLOTS = ("plot-trends", "plot-reliability", "plot-sweep", "plot-latency", "plot-energy", "plot-accuracy")
ORDER = ["verdict", "changes", "trends", "reliability", "sweep", "plots", "tables"]  # tables last
SCREENSHOT_WIDTH, SCREENSHOT_HEIGHT = 1200, 1700  # the first screens: verdict, changes, trends, reliability
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMIUM_TIMEOUT_S = 60
HOSTILE = '<script>alert("lab")</script>'


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The third night of a lab, judged against the first as its baseline, after a sweep: every section of the
    report has content (the trends three nights)."""
    tmp_path = tmp_path_factory.mktemp("htmlreport")
    lab = write_lab(tmp_path, samples=SAMPLES)
    first = hil("run", lab, "--json")
    assert first.returncode == PASS, first.stderr[-3000:]
    sweep = hil("sweep", lab, "--threshold", "0.5:0.9:0.2")
    assert sweep.returncode == PASS, sweep.stderr[-3000:]
    for _night in range(2):
        time.sleep(1.05)  # runs are stamped to the second: one night after the other in the catalog
        last = hil("run", lab, "--baseline", json.loads(first.stdout)["run_dir"], "--json")
        assert last.returncode == PASS, last.stderr[-3000:]
    return Path(json.loads(last.stdout)["run_dir"])


@pytest.fixture(scope="module")
def report(run_dir) -> str:
    path = write_report(run_dir)
    assert path == run_dir / REPORT_HTML
    return path.read_text(encoding="utf-8")


class Page(HTMLParser):
    """The parts of a page the tests look at: element ids, sections in order, figure contents, script elements,
    the h1 text."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.scripts, self.h1, self.figures, self.sections = set(), 0, "", {}, []
        self._figure, self._in_h1 = None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "section":
            self.sections.append(attrs["id"])
        self.scripts += tag == "script"
        self._in_h1 = self._in_h1 or tag == "h1"
        if tag == "figure":
            self._figure = attrs.get("id")
            self.figures[self._figure] = []
        elif self._figure is not None:
            self.figures[self._figure].append((tag, attrs))

    def handle_endtag(self, tag):
        self._figure = None if tag == "figure" else self._figure
        self._in_h1 = self._in_h1 and tag != "h1"

    def handle_data(self, data):
        if self._in_h1:
            self.h1 += data


def test_the_report_is_one_self_contained_file(report, run_dir):
    for outside in ("http://", "https://", 'src="/', "<link", "<script", "@import", "url("):
        assert outside not in report, f"{outside!r} in the report: not self-contained"
    page = Page(report)
    assert page.scripts == 0 and page.sections == ORDER
    for plot in PLOTS:
        tags = dict(page.figures[plot])
        assert "figcaption" in tags, plot
        source = tags["img"]["src"]
        assert source.startswith("data:image/png;base64,"), plot
        png = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, plot
    run = json.loads((run_dir / "run.json").read_text())
    assert page.h1 == f"Lab {run['lab']['name']}"
    for text in (run["id"], "PASS", run["baseline"]["id"], run["git"]["revision"][:12],
                 run["boards"]["an386-digits"]["firmware"]["image_sha256"][:12],
                 run["testsets"]["qute-digits"]["ood"]["sha256"][:12], "emulated (QEMU mps2-an500)", "25.0 MHz",
                 "Regression rules against baseline", "exact", "burst", "window",
                 f"Compared with the baseline {run['baseline']['id']}", "Changes against baseline",
                 "The last 3 finished runs of lab", "The lab&#x27;s newest sweep"):
        assert text in report, text
    # NaN from the JSON (accuracy of an OOD set, the full path of a board that always exited) is a dash.
    assert not re.search(r">\s*nan\s*<", report, re.IGNORECASE)


def _group_alive(group: int) -> bool:
    """Is any live (not zombie) process still in this process group? Linux /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(pgrp) == group and state != "Z":
            return True
    return False


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium in a process group of its own; whatever happens, nothing of it outlives the call."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", f"--user-data-dir={profile}", *args]
    # No session bus in CI containers: saying so up front spares Chromium its D-Bus retries.
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"}
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish in {CHROMIUM_TIMEOUT_S} s")
    finally:
        # Its helpers (zygote, GPU, crashpad) share the group; the group id is Chromium's own pid.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(process.pid), "chromium left processes behind"
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_chromium_renders_the_report(report, run_dir, tmp_path):
    screenshot = tmp_path / "report.png"
    dom = chromium(tmp_path / "profile", f"--screenshot={screenshot}", "--dump-dom", "--hide-scrollbars",
                   f"--window-size={SCREENSHOT_WIDTH},{SCREENSHOT_HEIGHT}", (run_dir / REPORT_HTML).as_uri())
    rendered = Page(dom)
    assert set(PLOTS) <= rendered.ids and rendered.sections == ORDER
    assert run_dir.name in dom and "PASS" in dom
    assert screenshot.stat().st_size > 20_000
    rgb = np.round(imread(screenshot)[..., :3] * 255).astype(np.int32)
    assert rgb.shape[:2] == (SCREENSHOT_HEIGHT, SCREENSHOT_WIDTH)
    colours = (rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).ravel()  # one int per pixel: 0xRRGGBB
    assert len(np.unique(colours)) > 100, "the screenshot is (nearly) one colour"

    def painted(hex_colour: str, within: int = 0) -> int:
        """Pixels of this colour, give or take `within` per channel (a plot's lines are scaled and smoothed)."""
        wanted = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return int(np.count_nonzero(np.all(np.abs(rgb - wanted) <= within, axis=-1)))

    assert painted("#1a7f37") > 200, "the green PASS badge is not on screen: was the style applied?"
    # matplotlib's first colour: the trend lines and reliability curves, on the first screens.
    assert painted("#1f77b4", within=24) > 500, "no trend or reliability lines on screen: were the plots decoded?"
    if os.environ.get("HIL_REPORT_SCREENSHOT"):
        keep = Path(os.environ["HIL_REPORT_SCREENSHOT"])
        # A palette of 256 colours: the page is flat colours and lines, and docs/ stay small.
        Image.open(screenshot).convert("RGB").quantize(256).save(keep, optimize=True)
        assert keep.stat().st_size < 400_000, f"{keep}: {keep.stat().st_size} bytes, keep it under 400 KB"


def _copy_run(run_dir: Path, tmp_path: Path,
              names=("run.json", "metrics.json", "records.parquet", "measurements.parquet")) -> Path:
    copy = tmp_path / run_dir.name
    copy.mkdir()
    for name in names:
        shutil.copy(run_dir / name, copy / name)
    return copy


def test_strings_from_the_run_files_are_escaped_and_failures_come_first(run_dir, tmp_path):
    copy = _copy_run(run_dir, tmp_path)
    run = json.loads((copy / "run.json").read_text())
    run["lab"]["name"] = HOSTILE
    run["verdict"] = {"status": "fail", "exit_code": 1, "reasons": ['<img src=x onerror="alert(1)">']}
    (copy / "run.json").write_text(json.dumps(run))
    metrics = json.loads((copy / "metrics.json").read_text())  # NaN in, NaN out: Python's json allows it
    rule = {"rule": "latency", "status": "fail", "figures": {}, "message": "latency: <b>slower</b> & worse"}
    metrics["rules"].append({"slot": "an386-digits", "testset": "clean", "result": rule})
    (copy / "metrics.json").write_text(json.dumps(metrics))

    text = write_report(copy).read_text(encoding="utf-8")
    page = Page(text)
    assert page.scripts == 0 and page.h1 == f"Lab {HOSTILE}"  # shown as text, not run
    assert HOSTILE not in text and "&lt;script&gt;alert(&quot;lab&quot;)&lt;/script&gt;" in text
    assert "<img src=x" not in text and "<b>slower" not in text and "&lt;b&gt;slower&lt;/b&gt; &amp; worse" in text
    rules = text[text.index("Regression rules against baseline"):]
    assert rules.index("slower") < rules.index(">pass<"), "a failing rule is listed after passing ones"
    assert 'class="verdict fail"' in text


def test_a_run_without_metrics_or_measurements_still_gets_a_report(run_dir, tmp_path):
    """An interrupted run has only run.json: the page says less, every plot section is still there."""
    copy = _copy_run(run_dir, tmp_path, names=("run.json",))
    run = json.loads((copy / "run.json").read_text())
    run.update(status="interrupted", verdict={"status": "interrupted", "exit_code": 130, "reasons": ["Ctrl-C"]})
    (copy / "run.json").write_text(json.dumps(run))
    page = Page(text := write_report(copy).read_text(encoding="utf-8"))
    assert set(PLOTS) - {"plot-sweep"} <= page.ids and "no data in this run" in text and "INTERRUPTED" in text
    assert page.sections == ORDER and "No sweep of lab" in text  # not in this folder: the copy is alone
