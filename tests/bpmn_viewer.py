"""Test helper: bpmn-js in a real headless Chromium (Debian's), driven by Python playwright.

:func:`ensure_bpmn_js` installs the pinned bpmn-js from ``tests/browser/package.json``
with npm when ``node_modules`` is missing; :class:`BpmnViewer` opens one page and
imports BPMN XML into ``new BpmnJS({container})``, returning bpmn-js's warnings and
the ids of the elements it drew. No mocks: this is the viewer users open files in.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from filelock import FileLock

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
VIEWER_JS = BROWSER_DIR / "node_modules" / "bpmn-js" / "dist" / "bpmn-viewer.production.min.js"
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


def ensure_bpmn_js(timeout: float = 300) -> Path:
    """The bpmn-js viewer bundle, running ``npm install`` in tests/browser first if it is missing."""
    with FileLock(str(BROWSER_DIR / ".npm-install.lock")):
        if not VIEWER_JS.is_file():
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is not installed: `apt-get install npm` (needed for bpmn-js in the tests)")
            proc = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                                  capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
            if proc.returncode != 0 or not VIEWER_JS.is_file():
                raise RuntimeError(f"`npm install` in {BROWSER_DIR} failed:\n{proc.stderr[-2000:]}")
    return VIEWER_JS


def chromium_path() -> str | None:
    """Debian's chromium (``apt-get install chromium``); playwright's own browsers are not used."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


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
