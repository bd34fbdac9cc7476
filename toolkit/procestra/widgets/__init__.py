"""Notebook views composed from the API: the explorer, variant browser, comparison, inbox and run history."""

from procestra.widgets.explorer import Comparison, Explorer, Inbox, RunHistory, VariantBrowser

__all__ = ["Comparison", "Explorer", "Inbox", "RunHistory", "VariantBrowser"]
