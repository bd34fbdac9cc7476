"""Test helper: bpmn-js in a real headless Chromium (Debian's), driven by Python playwright.

Every browser test gets its browser and bpmn-js here, and fails the same way when one is
missing: :func:`require_chromium` (Debian's chromium, from ``make sysdeps``) and
:func:`require_bpmn_js` (the bpmn-js that ``make browser-deps`` installs with ``npm ci`` from
``tests/browser/package-lock.json``; the tests never install it themselves). Both are part
of ``make test``. :class:`BpmnViewer` opens one page and imports BPMN XML into
``new BpmnJS({container})``, returning bpmn-js's warnings and the ids of the elements it
drew. No mocks: this is the viewer users open files in.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
BPMN_JS_DIR = BROWSER_DIR / "node_modules" / "bpmn-js"
VIEWER_JS = BPMN_JS_DIR / "dist" / "bpmn-viewer.production.min.js"
#: The OMG BPMN 2.0 schema, as shipped in bpmn-moddle (a bpmn-js dependency).
BPMN_XSD = BROWSER_DIR / "node_modules" / "bpmn-moddle" / "resources" / "bpmn" / "xsd" / "BPMN20.xsd"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
html, body { margin: 0; height: 100%; background: white; } #canvas { width: 100%; height: 100%; }
</style></head><body><div id="canvas"></div></body></html>"""

_IMPORT = """async (xml) => {
  if (window.__viewer) { window.__viewer.destroy(); window.__viewer = null; }
  const container = document.getElementById('canvas');
  container.innerHTML = '';
  const viewer = new BpmnJS({ container });
  window.__viewer = viewer;
  const messages = (list) => (list || []).map((w) => String(w.message || w));
  try {
    const result = await viewer.importXML(xml);
    viewer.get('canvas').zoom('fit-viewport');
    const registry = viewer.get('elementRegistry');
    const drawn = [...container.querySelectorAll('.djs-element[data-element-id]')]
      .map((el) => el.getAttribute('data-element-id'));
    return {
      error: null,
      warnings: messages(result.warnings),
      elements: registry.getAll().map((e) => [e.id, e.type]),
      drawn,
    };
  } catch (err) {
    return { error: String((err && err.message) || err), warnings: messages(err && err.warnings),
             elements: [], drawn: [] };
  }
}"""


def chromium_path() -> str | None:
    """Debian's chromium (``apt-get install chromium``); playwright's own browsers are not used."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """Debian's chromium, or fail the calling test saying how to install it."""
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian's chromium is not installed: run `make sysdeps` (part of `make test`)", pytrace=False)
    return exe


def require_bpmn_js() -> Path:
    """The bpmn-js viewer bundle at the version ``package-lock.json`` pins, or fail the calling test."""
    lock = json.loads((BROWSER_DIR / "package-lock.json").read_text(encoding="utf-8"))
    pinned = lock["packages"]["node_modules/bpmn-js"]["version"]
    manifest = BPMN_JS_DIR / "package.json"
    found = json.loads(manifest.read_text(encoding="utf-8"))["version"] if manifest.is_file() else None
    if found != pinned or not VIEWER_JS.is_file() or not BPMN_XSD.is_file():
        pytest.fail(
            f"bpmn-js {pinned} is not installed in {BROWSER_DIR / 'node_modules'} (found: "
            f"{found or 'nothing'}): run `make browser-deps` (part of `make test`)",
            pytrace=False,
        )
    return VIEWER_JS


def open_viewer() -> BpmnViewer:
    """A :class:`BpmnViewer` in Debian's chromium with the pinned bpmn-js; fails the test if either is missing."""
    return BpmnViewer(require_chromium(), require_bpmn_js())


@dataclass(frozen=True)
class ImportResult:
    """What bpmn-js made of one document."""

    error: str | None
    warnings: list[str]
    elements: dict[str, str] = field(default_factory=dict)  # id -> bpmn-js type, e.g. "bpmn:Task"
    drawn: frozenset[str] = frozenset()  # ids of the SVG groups (.djs-element) on the canvas


class BpmnViewer:
    """One headless Chromium page with bpmn-js loaded; use as a context manager."""

    def __init__(self, executable: str, viewer_js: Path) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                                     headless=True)  # fmt: skip
            self.page = self._browser.new_page(viewport={"width": 1600, "height": 900})
            self.page.route("**/*", lambda route: route.abort())  # nothing leaves the machine
            self.page.set_content(_PAGE)
            self.page.add_script_tag(content=viewer_js.read_text(encoding="utf-8"))
            self.page.wait_for_function("typeof window.BpmnJS === 'function'")
        except BaseException:
            self._pw.stop()
            raise

    def import_xml(self, xml: str, screenshot: Path | None = None) -> ImportResult:
        """Import ``xml`` into a fresh viewer; optionally save a PNG screenshot of the canvas."""
        raw: dict[str, Any] = self.page.evaluate(_IMPORT, xml)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(screenshot), full_page=False)
        return ImportResult(error=raw["error"], warnings=list(raw["warnings"]),
                            elements={i: t for i, t in raw["elements"]}, drawn=frozenset(raw["drawn"]))  # fmt: skip

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._pw.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
