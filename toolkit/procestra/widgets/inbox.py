"""The inbox of human tasks: pick one, fill in its form, complete it (through the engine's API)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from procestra.errors import ProcestraError
from procestra.widgets.common import (
    Composite,
    descendants,
    error_html,
    load_widgets,
    ok_html,
)

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Inbox"]


class Inbox(Composite):
    """The human tasks of a workspace: pick one, fill in its form, complete it.

    Lists open tasks (overdue ones first, in red), optionally only ``group``'s or those
    ``user`` may take; the form is drawn from the task's fields (type, required, allowed
    values), and a submission goes through :func:`procestra.engine.complete_task`, whose
    form check reports every wrong field in the status line.
    """

    def __init__(self, workspace: Home, *, user: str | None = None, group: str | None = None) -> None:
        W = load_widgets()
        self.workspace, self.user, self.group = workspace, user, group
        self.select = W.Select(options=[], rows=10, layout={"width": "38%"})
        self.detail = W.HTML()
        self.form_box = W.VBox()
        self.claim_button = W.Button(description="Claim", icon="hand-paper-o")
        self.submit_button = W.Button(description="Complete", icon="check", button_style="success")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.status = W.HTML()
        self.fields: dict[str, Any] = {}
        self.items: dict[str, Any] = {}
        self.root = W.VBox([W.HBox([self.select, W.VBox([self.detail, self.form_box,
                                                         W.HBox([self.claim_button, self.submit_button])],
                                                        layout={"width": "60%"})]),
                            W.HBox([self.refresh_button, self.status])])
        self.root.add_class("procestra-inbox")
        self.select.observe(lambda _: self._show(), names="value")
        self.claim_button.on_click(lambda _: self.claim())
        self.submit_button.on_click(lambda _: self.submit())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widgets: list[Any] = descendants(self.root)
        self.refresh()

    def refresh(self) -> None:
        """Reload the open tasks."""
        from procestra.engine import list_tasks

        tasks = list_tasks(self.workspace, group=self.group, user=self.user)
        tasks.sort(key=lambda t: (not t.overdue, t.due or t.created, t.created))
        self.items = {t.task: t for t in tasks}
        current = self.select.value
        self.select.options = [(f"{'⚠ ' if t.overdue else ''}{t.name} · {t.case}"
                                f"{' · ' + t.candidate_group if t.candidate_group else ''}", t.task) for t in tasks]
        self.select.value = current if current in self.items else (tasks[0].task if tasks else None)
        if not tasks:
            self.detail.value, self.form_box.children = "<i>no open tasks</i>", ()
        self._show()

    @property
    def task(self) -> Any:
        return self.items.get(self.select.value)

    def _show(self) -> None:
        W = load_widgets()
        t = self.task
        if t is None:
            return
        due = ""
        if t.due is not None:
            colour = "#b00020" if t.overdue else "#555"
            due = f" &middot; <span style='color:{colour}'>due {t.due:%Y-%m-%d %H:%M} UTC" \
                  f"{' (overdue)' if t.overdue else ''}</span>"
        data = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in sorted(t.case_data.items()))
        self.detail.value = (f"<b>{html.escape(t.name)}</b> in case <code>{html.escape(t.case)}</code> "
                             f"({html.escape(t.model)}){due}<br>"
                             f"{'claimed by ' + html.escape(t.assignee) if t.assignee else 'not claimed'}"
                             + (f"<br><span style='color:#b00020'>case {html.escape(t.case_status)}: "
                                f"{html.escape(t.case_error)}</span>" if t.case_error else "")
                             + f"<table style='font-size:90%'>{data}</table>")
        self.fields = {}
        for f in t.form:
            label = (f.get("label") or f["name"]) + (" *" if f.get("required") else "")
            common = {"description": label, "style": {"description_width": "160px"}}
            kind, default = f.get("type", "string"), f.get("default")
            if kind == "enum" or f.get("allowed"):
                w = W.Dropdown(options=[("—", None)] + [(str(a), a) for a in f.get("allowed", [])], value=default,
                               **common)
            elif kind == "boolean":
                w = W.Checkbox(value=bool(default), **common)
            elif kind in ("integer", "number"):  # text, so that "not filled in" stays visible and required
                w = W.Text(value="" if default is None else str(default), placeholder=kind, **common)
            elif kind == "date":
                w = W.DatePicker(**common)
            elif kind == "text":
                w = W.Textarea(value=default or "", **common)
            else:
                w = W.Text(value=default or "", **common)
            self.fields[f["name"]] = w
        self.form_box.children = tuple(self.fields.values())
        self.widgets = descendants(self.root)

    def values(self) -> dict[str, Any]:
        """The form as filled in (empty fields left out, dates as ISO text)."""
        out: dict[str, Any] = {}
        for name, w in self.fields.items():
            v = w.value
            if v is None or v == "":
                continue
            kind = next((f.get("type") for f in self.task.form if f["name"] == name), None) if self.task else None
            if kind in ("integer", "number") and isinstance(v, str):
                try:
                    v = int(v) if kind == "integer" and v.strip().lstrip("+-").isdigit() else float(v)
                except ValueError:
                    pass  # the form check names the field and the expected type
            out[name] = v.isoformat() if hasattr(v, "isoformat") else v
        return out

    def claim(self) -> Any:
        """Claim the selected task for ``user``."""
        from procestra.engine import claim_task

        if self.task is None or not self.user:
            self.status.value = error_html("pick a task, and give the inbox a user (Inbox(ws, user=...)) to claim")
            return None
        try:
            item = claim_task(self.workspace, self.task.task, self.user)
        except ProcestraError as exc:
            self.status.value = error_html(exc)
            return None
        self.status.value = ok_html(f"claimed {item.task} for {self.user}")
        self.refresh()
        return item

    def submit(self) -> Any:
        """Complete the selected task with the form's values; a worker moves the case on."""
        from procestra.engine import complete_task

        t = self.task
        if t is None:
            self.status.value = error_html("no task selected")
            return None
        try:
            item = complete_task(self.workspace, t.task, self.values(), user=self.user, case=t.case)
        except ProcestraError as exc:
            self.status.value = error_html(exc)
            return None
        self.status.value = ok_html(f"completed {item.name} of case {item.case}")
        self.refresh()
        return item
