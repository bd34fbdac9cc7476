"""What the notebook views share: ipywidgets on demand, closing a widget tree, status and table HTML."""

from __future__ import annotations

import html
from typing import Any

from procestra.errors import ProcestraError
from procestra.mining import stats
from procestra.models.render import human_duration

__all__ = ["EMPTY", "Composite", "close_all", "descendants", "error_html", "load_widgets", "ok_html",
           "variants_table"]

#: What a panel shows when the filter keeps no case.
EMPTY = "<p style='color:#888'><i>no cases match</i></p>"


def load_widgets() -> Any:
    """The ``ipywidgets`` module, imported on first use (untyped: it ships no annotations)."""
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - depends on the installation
        raise ProcestraError("the explorer needs ipywidgets 8: pip install 'ipywidgets>=8,<9'") from None
    return ipywidgets


def descendants(root: Any) -> list[Any]:
    """``root``'s widget tree, children before their parents."""
    out: list[Any] = []
    for child in getattr(root, "children", ()):
        out += descendants(child)
    return [*out, root]


def close_all(widgets: list[Any]) -> None:
    """Close ``widgets`` with their layout and style models (ipywidgets keeps those open otherwise)."""
    for w in widgets:
        for part in (getattr(w, "layout", None), getattr(w, "style", None)):
            if part is not None:
                part.close()
        w.close()


def error_html(exc: BaseException | str) -> str:
    """A status line in red."""
    return f"<span style='color:#b00020'>error: {html.escape(str(exc))}</span>"


def ok_html(message: str) -> str:
    """A status line in green."""
    return f"<span style='color:#2e7d32'>{html.escape(message)}</span>"


def variants_table(variants: stats.Variants, *, numbered: bool = False) -> str:
    """Variants as an HTML table: cases, share, mean duration and the activities."""
    rows = "".join(
        f"<tr>{f'<td>#{i}</td>' if numbered else ''}<td style='text-align:right'>{r['count']:,}</td>"
        f"<td>{r['share']:.1%}</td><td>{html.escape(human_duration(r['mean_duration_s'] or 0.0))}</td>"
        f"<td>{html.escape(' → '.join(r['activities']))}</td></tr>"
        for i, r in enumerate(variants.to_pylist(), 1))
    head = "<th>#</th>" if numbered else ""
    return (f"<table class='procestra-variants' style='font-size:90%'><tr>{head}<th>cases</th><th>share</th>"
            f"<th>mean duration</th><th>activities</th></tr>{rows}</table>")


class Composite:
    """A widget made of parts: shows its ``root``, and ``close()`` closes every part."""

    root: Any
    widgets: list[Any]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)  # type: ignore[no-untyped-call]  # IPython.display ships no annotations

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.root._repr_mimebundle_(include=include, exclude=exclude)

    def close(self) -> None:
        """Close every widget."""
        close_all(self.widgets)
