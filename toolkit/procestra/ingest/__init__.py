"""Ingest: read a source, map and check it in staging, commit it to the event store in one transaction."""

from procestra.ingest.loader import LoadResult, ingest
from procestra.ingest.quality import QualityIssue, QualityReport

__all__ = ["LoadResult", "QualityIssue", "QualityReport", "ingest"]
