"""The explorer notebook served by Voila, driven in Debian's headless Chromium with playwright.

The module fixture bakes a workspace holding ``event_logs/loan-sample.csv`` into a copy of
``notebooks/01_explore.ipynb`` (papermill's ``parameterize_notebook``), serves it with
``voila`` on a free loopback port and stops it at teardown. The tests then use the page as
a person would: read the map, move the path slider, pick a filter value, export the map.
Every number the page shows is checked against the public API. Screenshots are kept in
``tests/output/explorer*.png``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from bpmn_viewer import CHROMIUM_ARGS, require_chromium
from procestra import Filter, LogSchema, Workspace
from procestra.mining import stats
from procestra.widgets.explorer import Explorer

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_explore.ipynb"
SAMPLE = ROOT / "event_logs" / "loan-sample.csv"
OUTPUT = ROOT / "tests" / "output"
LOAD_TIMEOUT_MS = 180_000  # voila starts a kernel per page; the first load can take 10-20 s, more on a busy machine
STEP_TIMEOUT_MS = 60_000
QUIET_MS = 800  # the explorer's DOM must stay unchanged this long before a redraw counts as finished


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    """Debian's chromium; every test here fails (before voila starts) when it is missing."""
    return require_chromium()


# -- the server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _voila_command(notebook: Path, port: int) -> list[str]:
    voila = Path(sys.executable).with_name("voila")
    return [str(voila), str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0", "--show_tracebacks=True"]  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop voila (which shuts its kernels down), then any of its children still alive, by pid."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@dataclass(frozen=True)
class Served:
    """The served explorer: its URL, the workspace behind it, and a scratch directory."""

    url: str
    ws: Workspace
    tmp: Path
    command: list[str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, python3_kernel: None) -> Iterator[Served]:
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    tmp = tmp_path_factory.mktemp("voila")
    ws = Workspace.init(tmp / "ws")
    # the same load as `make demo`; the notebook finds the log there and does not load it again
    ws.ingest(SAMPLE, log="loan", schema=LogSchema(case_attributes=("amount", "channel")),
              timezone="Europe/Amsterdam", progress=False)  # fmt: skip
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)),
                               {"workspace": str(ws.path), "log_path": str(SAMPLE), "log_name": "loan"})  # fmt: skip
    served_nb = tmp / "explore.ipynb"
    nbformat.write(nb, served_nb)
    log = tmp / "voila.log"
    env = {**os.environ, "PROCESTRA_NO_PROGRESS": "1", "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    for _attempt in range(3):  # a free port can be taken between choosing and binding it
        port = _free_port()
        command = _voila_command(served_nb, port)
        with log.open("ab") as out:
            proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and not _answers(url):
            time.sleep(0.2)
        if proc.poll() is None and _answers(url):
            break
        if proc.poll() is None:
            _stop(proc)
    else:
        pytest.fail(f"voila did not start: {' '.join(command)}\n{log.read_text(errors='replace')[-3000:]}")
    try:
        yield Served(url=url, ws=ws, tmp=tmp, command=command)
    finally:
        _stop(proc)


# -- the browser ---------------------------------------------------------------------
_WATCH = """() => {
  window.__procestraChanged = performance.now();
  const root = document.querySelector('.procestra-explorer');
  new MutationObserver(() => { window.__procestraChanged = performance.now(); })
    .observe(root, { subtree: true, childList: true, attributes: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """Uncaught JavaScript errors of the page (a broken widget view shows up here)."""
    return []


@pytest.fixture(scope="module")
def page(chromium: str, served: Served, page_errors: list[str]) -> Iterator[Any]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1600, "height": 2000})
        pg.set_default_timeout(STEP_TIMEOUT_MS)
        pg.on("pageerror", lambda exc: page_errors.append(str(exc)))
        pg.goto(served.url, timeout=LOAD_TIMEOUT_MS)
        try:
            pg.wait_for_selector(".procestra-map svg", timeout=LOAD_TIMEOUT_MS)
        except PlaywrightTimeout:
            pg.screenshot(path=str(OUTPUT / "explorer-failed.png"), full_page=True)
            log = (served.tmp / "voila.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the explorer's map did not appear; voila's log:\n{log}")
        pg.evaluate(_WATCH)
        yield pg
        browser.close()
    finally:
        pw.stop()


def settle(page: Any) -> None:
    """Wait until the explorer is idle (no busy line) and its DOM unchanged for QUIET_MS: a redraw has finished."""
    page.wait_for_function(
        "ms => performance.now() - window.__procestraChanged > ms"
        " && !(document.querySelector('.procestra-busy')?.innerText.trim())", arg=QUIET_MS, polling=100)


def wait_until(page: Any, js: str, arg: Any, what: str, now: Callable[[], Any]) -> None:
    """``page.wait_for_function(js, arg)``, failing with ``what`` and the value ``now()`` shows instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(js, arg=arg, polling=100)
    except PlaywrightTimeout:
        pytest.fail(f"{what} within {STEP_TIMEOUT_MS / 1000:.0f} s; the page shows {now()!r}")


def edges(page: Any) -> int:
    """Drawn edges of the map (Graphviz's ``g.edge`` groups)."""
    return int(page.locator(".procestra-map svg g.edge").count())


def map_svg(page: Any) -> str:
    return str(page.locator(".procestra-map svg").first.evaluate("e => e.outerHTML"))


def summary(page: Any) -> str:
    return " ".join(page.inner_text(".procestra-summary").split())


def shot(page: Any, name: str) -> Path:
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=True)
    return path


def api_edges(ws: Workspace, paths: float) -> int:
    """What the same explorer draws for ``paths`` in this process, straight from the API."""
    ex = Explorer(ws, "loan")
    try:
        ex.path_slider.value = paths
        return ex.map_html.value.count('class="edge"')
    finally:
        ex.close()


# -- the tests -------------------------------------------------------------------------
def test_map_is_drawn_and_screenshot_saved(page: Any, served: Served, page_errors: list[str]) -> None:
    settle(page)
    png = shot(page, "explorer.png")
    assert png.stat().st_size > 10_000
    info = served.ws.info("loan")
    assert summary(page).startswith(f"{info.cases:,} of {info.cases:,} cases, {info.events:,} of {info.events:,}")
    assert edges(page) == api_edges(served.ws, 1.0) > 0
    assert "Submit application" in page.inner_text(".procestra-map")
    assert not page_errors


def test_path_slider_redraws_with_fewer_edges(page: Any, served: Served) -> None:
    settle(page)
    before_svg, before = map_svg(page), edges(page)
    expected = api_edges(served.ws, 0.5)
    assert 0 < expected < before
    handle = page.locator(".procestra-path-slider .noUi-handle")
    handle.focus()
    for _ in range(10):  # 100% -> 50% in steps of 5%
        handle.press("ArrowLeft")
    readout = page.locator(".procestra-path-slider .widget-readout")
    wait_until(page, "s => document.querySelector('.procestra-path-slider .widget-readout').textContent.trim() === s",
               "50%", "the path slider's readout did not reach 50%", lambda: readout.inner_text())
    wait_until(page, "n => document.querySelectorAll('.procestra-map svg g.edge').length === n", expected,
               f"the map did not redraw with the {expected} edges the API gives at paths=0.5", lambda: edges(page))
    settle(page)
    shot(page, "explorer-paths.png")
    assert map_svg(page) != before_svg
    assert 0 < edges(page) == expected < before


def test_filter_value_changes_summary(page: Any, served: Served) -> None:
    settle(page)
    before = summary(page)
    options = page.eval_on_selector_all(".procestra-attribute-select option", "os => os.map(o => o.value)")
    value = next(v for v in options if v.startswith("channel = "))
    channel = value.removeprefix("channel = ")
    kept = stats.dfg(served.ws, "loan", Filter.case_attribute("channel", [channel])).cases
    total = served.ws.info("loan").cases
    assert 0 < kept < total
    expected = f"{kept:,} of {total:,} cases"
    page.select_option(".procestra-attribute-select select", value=value)
    wait_until(page, "s => document.querySelector('.procestra-summary').innerText.replace(/\\s+/g, ' ')"
               ".trim().startsWith(s)", expected, f"the summary did not change to {expected!r} after picking "
               f"{value!r}", lambda: summary(page))
    settle(page)
    shot(page, "explorer-filter.png")
    assert summary(page) != before and summary(page).startswith(expected)
    assert page.locator(".procestra-map svg").count() == 1


def test_svg_export_writes_file_and_reports_path(page: Any, served: Served, page_errors: list[str]) -> None:
    settle(page)
    box = page.locator(".procestra-svg-path input")
    assert box.input_value().endswith("loan-map.svg")
    status = page.locator(".procestra-status")

    # a path that cannot be written: an error in the status line, nothing written
    blocker = served.tmp / "not-a-directory"
    blocker.write_text("a file, not a directory")
    box.fill(str(blocker / "map.svg"))
    page.click(".procestra-export-svg")
    wait_until(page, "s => document.querySelector('.procestra-status').innerText.includes(s)", "error:",
               "no error in the status line for an unwritable export path", lambda: status.inner_text())
    assert f"cannot write {blocker / 'map.svg'}" in status.inner_text()

    target = served.tmp / "exports" / "map-from-browser.svg"
    box.fill(str(target))
    page.click(".procestra-export-svg")
    wait_until(page, "s => document.querySelector('.procestra-status').innerText.includes(s)", "map written to",
               "the status line did not report the export", lambda: status.inner_text())
    settle(page)
    shot(page, "explorer-export.png")
    assert status.inner_text().strip() == f"map written to {target}"
    assert box.input_value() == str(target)
    text = target.read_text(encoding="utf-8")
    assert ET.fromstring(text.encode()).tag == "{http://www.w3.org/2000/svg}svg"
    assert text.count('class="edge"') == edges(page) > 0  # the map on the screen, as it is now
    assert not page_errors
