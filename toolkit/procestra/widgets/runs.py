"""The history of scheduled notebook runs, with status colours and links to their outputs."""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from types import ModuleType
from typing import TYPE_CHECKING, Any

from procestra.widgets.common import (
    Composite,
    close_all,
    descendants,
    load_widgets,
)

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["RunHistory"]

_ALL_RUNS = "(all)"


def _schedule() -> ModuleType:
    """``procestra.schedule``, whose ``__init__`` loads each name on first use (papermill is slow to
    import): its functions are read off the module, as ``procestra.schedule.list_runs``."""
    import procestra.schedule

    return procestra.schedule


def _href(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return os.path.relpath(path, os.getcwd())  # Jupyter serves files relative to where it runs
    except ValueError:
        return path


def _badge(status: str) -> str:
    from procestra.schedule.runs import STATUS_COLOURS

    colour = STATUS_COLOURS.get(status, "#000")
    return (f'<span class="procestra-status procestra-status-{status}" style="background:{colour};color:#fff;'
            f'border-radius:4px;padding:1px 6px">{status}</span>')


class RunHistory(Composite):
    """Past and pending runs with status colours and links to their outputs; ``refresh()`` re-reads them."""

    def __init__(self, workspace: Home, job: str | None = None, *, status: str | None = None,
                 limit: int = 200) -> None:
        from procestra.schedule.runs import STATUSES

        w = load_widgets()
        self.workspace = workspace
        self.limit = limit
        jobs = [j.name for j in _schedule().list_jobs(workspace)]
        runs_jobs = sorted({r.job for r in _schedule().list_runs(workspace, limit=limit)} - set(jobs))
        self.job_picker = w.Dropdown(options=[_ALL_RUNS, *jobs, *runs_jobs], value=job if job else _ALL_RUNS,
                                     description="job")
        if job and job not in self.job_picker.options:
            self.job_picker.options = [*self.job_picker.options, job]
            self.job_picker.value = job
        self.status_picker = w.Dropdown(options=[_ALL_RUNS, *STATUSES], value=status or _ALL_RUNS, description="status")
        self.refresh_button = w.Button(description="refresh", icon="refresh")
        self.summary = w.HTML()
        self.table = w.HTML()
        self.run_picker = w.Dropdown(options=[], description="run")
        self.details = w.HTML()
        self.runs: list[Any] = []
        self.widgets = [self.job_picker, self.status_picker, self.refresh_button, self.summary, self.table,
                        self.run_picker, self.details]
        self.root = w.VBox([w.HBox([self.job_picker, self.status_picker, self.refresh_button]), self.summary,
                            self.table, self.run_picker, self.details])
        self.root.add_class("procestra-run-history")
        self.job_picker.observe(self._on_change, names="value")
        self.status_picker.observe(self._on_change, names="value")
        self.run_picker.observe(self._on_pick, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh()

    # -- state -------------------------------------------------------------------------
    @property
    def job(self) -> str | None:
        return None if self.job_picker.value == _ALL_RUNS else self.job_picker.value

    @property
    def status(self) -> str | None:
        return None if self.status_picker.value == _ALL_RUNS else self.status_picker.value

    def refresh(self) -> RunHistory:
        """Read the history again and redraw."""
        from procestra.schedule.runs import STATUSES

        self.runs = _schedule().list_runs(self.workspace, job=self.job, status=self.status, limit=self.limit)
        counts = Counter(r.status for r in self.runs)
        self.summary.value = (f"<div>{len(self.runs)} runs: "
                              + " ".join(f"{_badge(s)} {counts[s]}" for s in STATUSES if counts[s]) + "</div>")
        self.table.value = self._table()
        self.run_picker.options = [r.run_id for r in self.runs]
        self._on_pick(None)
        return self

    def _table(self) -> str:
        if not self.runs:
            return "<p>no runs yet</p>"
        rows = []
        for r in self.runs:
            links = " ".join(
                f'<a href="{html.escape(h)}" target="_blank" title="{html.escape(p or "")}">{label}</a>'
                for label, p in (("ipynb", r.output), ("html", r.html)) if (h := _href(p)))
            err = html.escape(str(r.error)) if r.error else html.escape(r.reason or "")
            secs = f"{r.seconds:.1f} s" if r.seconds is not None else ""
            when = r.scheduled_for.strftime("%Y-%m-%d %H:%M:%S UTC")
            rows.append(f"<tr><td>{_badge(r.status)}</td><td>{html.escape(r.job)}</td><td>{when}</td>"
                        f"<td>{r.attempt}</td><td>{secs}</td><td>{links}</td>"
                        f"<td style='color:#842029'>{err}</td></tr>")
        head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>"
                       for h in ("status", "job", "scheduled for", "attempt", "took", "output", "error"))
        return (f"<table class='procestra-runs' style='border-collapse:collapse'><tr>{head}</tr>"
                f"{''.join(rows)}</table>")

    def _on_change(self, _: Any) -> None:
        self.refresh()

    def _on_pick(self, _: Any) -> None:
        run = next((r for r in self.runs if r.run_id == self.run_picker.value), None)
        if run is None:
            self.details.value = ""
            return
        d = run.to_dict()
        shown = {k: v for k, v in d.items() if k not in ("run", "output", "html") and v not in (None, {}, [])}
        self.details.value = "<pre style='white-space:pre-wrap'>" + html.escape(
            json.dumps(shown, indent=2, default=str)) + "</pre>"

    def close(self) -> None:
        """Close every widget; the object is unusable afterwards."""
        self.job_picker.unobserve(self._on_change, names="value")
        self.status_picker.unobserve(self._on_change, names="value")
        self.run_picker.unobserve(self._on_pick, names="value")
        close_all(descendants(self.root))

    def __repr__(self) -> str:
        return f"<RunHistory {self.job or 'all jobs'}: {len(self.runs)} runs>"
