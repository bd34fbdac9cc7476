"""Every figure the docs claim is backed: measured figures come from benchmarks/RESULTS.md,
and each of its sections names the script that produces it.

A performance figure in README.md or ARCHITECTURE.md (a time, a ratio, a throughput) must
appear in RESULTS.md as written, so the two can never drift apart (README once said
"p95 245 ms" while RESULTS.md said 196 ms). Figures that are settings, not measurements,
are listed in ``SETTINGS`` and checked against the code that applies them.
"""

from __future__ import annotations

import re
from pathlib import Path

from procestra.engine import runtime
from procestra.store import Store, testpoints

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

#: A number with a unit of time, ratio, rate or size (ranges such as "12-14 s" included).
FIGURE = re.compile(
    r"(?<![\w.])(\d[\d,]*(?:\.\d+)?(?:\s?[-–]\s?\d[\d,]*(?:\.\d+)?)?)\s?"
    r"(ms|µs|s|x|cases/s|MB|GB)(?![\w/])"
)

#: Figures in the docs that are settings: the sentence they sit in, and how the test checks them.
SETTINGS = {
    "120 s": "PROCESTRA_LOCK_TIMEOUT default",
    "300 s": "testpoints.PAUSE_LIMIT",
    "10 s": "engine.runtime.ENGINE_SECONDS_LIMIT",
}


def figures(path: Path) -> list[tuple[int, str]]:
    """The (line number, figure) pairs of a Markdown file, code blocks left out."""
    out = []
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for match in FIGURE.finditer(line):
            out.append((number, f"{match.group(1)} {match.group(2)}".replace("  ", " ")))
    return out


def normalised(text: str) -> str:
    return re.sub(r"\s?([-–])\s?", "-", text.replace("–", "-")).replace(" x", "x")


def test_measured_figures_in_readme_and_architecture_come_from_results() -> None:
    results = normalised(re.sub(r"(\d)\s(ms|s|x|cases/s|MB|GB)\b", r"\1 \2", RESULTS.read_text(encoding="utf-8")))
    strays = []
    for name in ("README.md", "ARCHITECTURE.md"):
        for number, figure in figures(ROOT / name):
            if figure in SETTINGS:
                continue
            if normalised(figure) not in results:
                strays.append(f"{name}:{number}: {figure}")
    assert strays == [], "figures not found in benchmarks/RESULTS.md (measure them, or drop them):\n" + "\n".join(
        strays
    )


def test_settings_quoted_in_the_docs_are_the_code_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PROCESTRA_LOCK_TIMEOUT", raising=False)
    assert Store(tmp_path / "events.duckdb").timeout == 120.0
    architecture = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert "(`PROCESTRA_LOCK_TIMEOUT`, default 120 s)" in architecture
    assert testpoints.PAUSE_LIMIT == 300.0
    assert "at most 300 s" in architecture
    assert runtime.ENGINE_SECONDS_LIMIT == 10.0 and runtime.ENGINE_STEPS_LIMIT == 10_000
    assert "10,000 steps or 10 s" in architecture


def test_every_results_section_names_a_script_that_make_runs() -> None:
    text = RESULTS.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert sections, "RESULTS.md has no sections"
    for title in sections:
        scripts = re.findall(r"`((?:benchmarks|tests)/[\w/]+\.py)", title)
        assert scripts, f"section {title!r} names no script that produces its figures"
        for script in scripts:
            assert (ROOT / script).is_file(), f"{title!r}: {script} does not exist"
            assert script in makefile, f"{title!r}: no make target runs {script}"
    for label, script in re.findall(r"^\*\*([\w ]+)\*\* \(`((?:benchmarks|tests)/[\w/]+\.py)", text, re.MULTILINE):
        assert (ROOT / script).is_file(), f"{label}: {script} does not exist"
