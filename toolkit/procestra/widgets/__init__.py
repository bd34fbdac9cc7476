"""Notebook views composed from the API: the explorer, variant browser, comparison, inbox and run history."""

from procestra.widgets.browse import Comparison, VariantBrowser
from procestra.widgets.explorer import Explorer
from procestra.widgets.inbox import Inbox
from procestra.widgets.runs import RunHistory

__all__ = ["Comparison", "Explorer", "Inbox", "RunHistory", "VariantBrowser"]
