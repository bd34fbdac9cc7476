"""The one name rule for logs, models and jobs (``procestra.names``), enforced where each is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from procestra import Workspace
from procestra.errors import InvalidArgumentError, ProcestraError
from procestra.names import MAX_NAME, check_name, is_name, shown
from procestra.store.catalogue import validate_log_name

GOOD = ["orders", "runs:orders", "Bestellung 2024", "a.b-c+d_e", "_draft", "x" * MAX_NAME, "Zürich"]
BAD = ["", " lead", "trail ", "a/../../../esc", "a/b", "a\\b", "..", "a..b", ".hidden", "name\n", "tab\there",
       "nul\x00", "x" * (MAX_NAME + 1), "semi;colon", "quote'", "at@2", 12, None]


@pytest.mark.parametrize("name", GOOD)
def test_names_that_follow_the_rule_pass(name: str) -> None:
    assert is_name(name) and check_name(name, kind="log", parameter="log") == name


@pytest.mark.parametrize("name", BAD)
def test_names_that_could_make_a_path_or_hide_a_character_are_refused(name: object) -> None:
    """Before: log names took '/' (so 'a/../../../esc' passed) and job names a trailing newline ('$')."""
    assert not is_name(name)
    with pytest.raises(InvalidArgumentError, match=r"invalid log name .*: use 1-128 letters"):
        validate_log_name(name)


def test_every_kind_of_name_follows_the_same_rule(ws: Workspace, tmp_path: Path) -> None:
    from procestra.models.repository import validate_model_name
    from procestra.schedule import add_job

    for name in ("a/../../../esc", "nightly\n", "x" * 200):
        with pytest.raises(InvalidArgumentError, match="invalid model name"):
            validate_model_name(name)
        with pytest.raises(ProcestraError, match="invalid job name"):
            add_job(ws, name, "report.ipynb", cron="0 6 * * *")
        with pytest.raises(InvalidArgumentError, match="invalid log name"):
            ws.ingest(tmp_path / "missing.csv", log=name)


def test_error_messages_cut_the_names_they_echo() -> None:
    long = "x" * 10_000
    with pytest.raises(InvalidArgumentError) as err:
        validate_log_name(long + "/")
    assert len(str(err.value)) < 400 and "(10,001 characters)" in str(err.value)
    assert shown("short") == "'short'"
