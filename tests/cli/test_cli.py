"""The real ``procestra`` command: exit codes, one-line errors, JSON shapes, workspace choice."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

CSV = (
    "case_id,activity,timestamp,resource\n"
    "c1,register,2024-03-01 09:00:00,ann\n"
    "c1,check,2024-03-01 10:30:00,bob\n"
    "c2,register,2024-03-01 11:00:00,ann\n"
    "c2,decide,2024-03-03 12:00:00,cid\n"
)


def test_init_ingest_info_logs_export_drop(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = tmp_path / "a.csv"
    src.write_text(CSV)
    assert run_cli("init", str(ws)).returncode == 0
    done = run_cli("ingest", str(src), "--log", "a", "--timezone", "Europe/Amsterdam", workspace=ws, check=True)
    assert "loaded 4 events" in done.stdout and "[warning]" not in done.stdout

    info = json.loads(run_cli("info", "a", "--json", workspace=ws, check=True).stdout)
    assert {k: info[k] for k in ("events", "cases", "activities", "variants")} == {
        "events": 4, "cases": 2, "activities": 3, "variants": 2}
    assert info["start"] == "2024-03-01T08:00:00+00:00" and info["end"] == "2024-03-03T11:00:00+00:00"

    again = json.loads(run_cli("ingest", str(src), "--log", "a", "--timezone", "Europe/Amsterdam", "--json",
                               workspace=ws, check=True).stdout)
    assert again["status"] == "unchanged"

    logs = json.loads(run_cli("logs", "--json", workspace=ws, check=True).stdout)
    assert [entry["name"] for entry in logs] == ["a"] and logs[0]["events"] == 4

    out = tmp_path / "a.xes.gz"
    assert run_cli("export", "a", "--to", str(out), workspace=ws, check=True).stdout.startswith("wrote")
    assert out.stat().st_size > 0
    assert run_cli("drop", "a", workspace=ws, check=True).returncode == 0
    assert json.loads(run_cli("logs", "--json", workspace=ws, check=True).stdout) == []


def test_workspace_from_environment(tmp_path: Path) -> None:
    ws = tmp_path / "envws"
    src = tmp_path / "a.csv"
    src.write_text(CSV)
    env = {"PROCESTRA_WORKSPACE": str(ws)}
    assert run_cli("ingest", str(src), "--log", "a", env=env).returncode == 0
    assert (ws / "events.duckdb").exists()
    assert json.loads(run_cli("info", "a", "--json", env=env).stdout)["events"] == 4


def test_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("init", str(ws), check=True)
    bad = tmp_path / "ragged.csv"
    bad.write_text("case_id,activity,timestamp\nx,a,2024-01-01\nx,b,2024-01-02,extra\n")
    good = tmp_path / "good.csv"
    good.write_text(CSV)
    cases = [
        (["info", "nope"], "no log named 'nope'"),
        (["ingest", str(bad), "--log", "r"], "row 2"),
        (["ingest", str(tmp_path / "none.csv"), "--log", "r"], "no such file"),
        (["ingest", str(good), "--log", "r", "--timezone", "Mars/Base"], "Mars/Base"),
        (["ingest", str(good), "--log", "r", "--case", "Ticket"], "Ticket"),
        (["ingest", str(bad), "--log", "x;y'"], "invalid log name"),
        (["ingest", str(bad), "--log", "r", "--replace", "--append"], "exclude"),
        (["ingest", str(bad)], "--log"),
        (["export", "nope", "--to", str(tmp_path / "x.csv")], "no log named"),
        (["nosuchcommand"], "No such command"),
        (["generate", "--events", "0", "--out", str(tmp_path / "g.csv")], "events"),
    ]
    for args, needle in cases:
        proc = run_cli(*args, workspace=ws)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert needle in lines[0], (args, lines[0])
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_workspace_and_debug_traceback(tmp_path: Path) -> None:
    proc = run_cli("logs", workspace=tmp_path / "missing")
    assert proc.returncode == 2 and "procestra init" in proc.stderr
    proc = run_cli("--debug", "logs", workspace=tmp_path / "missing")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_generate_writes_a_loadable_log(tmp_path: Path) -> None:
    out = tmp_path / "gen.parquet"
    report = json.loads(run_cli("generate", "--events", "3000", "--out", str(out), "--json", check=True).stdout)
    assert out.exists() and 2900 <= report["events"] <= 3000
    ws = tmp_path / "ws"
    loaded = json.loads(run_cli("ingest", str(out), "--log", "g", "--json", workspace=ws, check=True).stdout)
    assert loaded["events"] == report["events"]


def test_mining_commands_keep_their_json_shapes(tmp_path: Path, loan_csv: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("ingest", str(loan_csv), "--log", "loan", workspace=ws, check=True)

    dfg = json.loads(run_cli("dfg", "loan", "--json", workspace=ws, check=True).stdout)
    assert set(dfg) == {"edges", "start", "end"}
    edge = dfg["edges"][0]
    assert set(edge) == {"source", "target", "count", "mean_seconds"}
    assert isinstance(edge["count"], int) and isinstance(edge["mean_seconds"], float)
    assert dfg["start"] == {"Submit application": sum(dfg["start"].values())}

    top = json.loads(run_cli("variants", "loan", "--top", "3", "--json", workspace=ws, check=True).stdout)
    assert len(top) == 3 and [set(v) for v in top] == [{"variant", "count"}] * 3
    assert [v["count"] for v in top] == sorted((v["count"] for v in top), reverse=True)
    assert top[0]["variant"][0] == "Submit application"

    svg = tmp_path / "map.svg"
    out = json.loads(run_cli("dfg", "loan", "--filter", "top=5", "--paths", "0.5", "--out", str(svg), "--json",
                             workspace=ws, check=True).stdout)
    assert out["out"] == str(svg) and svg.read_text().lstrip().startswith("<?xml")

    bpmn = tmp_path / "loan.bpmn"
    found = json.loads(run_cli("discover", "loan", "--miner", "inductive", "--noise", "0.2", "--out", str(bpmn),
                               "--save", "loan-asis", "--json", workspace=ws, check=True).stdout)
    assert found["miner"] == "inductive" and found["saved"]["version"] == 1
    assert "bpmndi:BPMNDiagram" in bpmn.read_text()

    checked = json.loads(run_cli("conform", "loan", "loan-asis", "--json", workspace=ws, check=True).stdout)
    assert 0.0 <= checked["fitness"] <= 1.0 and 0.0 <= checked["precision"] <= 1.0
    listed = json.loads(run_cli("models", "list", "--json", workspace=ws, check=True).stdout)
    assert [m["name"] for m in listed] == ["loan-asis"]
    shown = json.loads(run_cli("models", "show", "loan-asis@1", "--json", workspace=ws, check=True).stdout)
    assert shown["source_log"] == "loan" and shown["miner"] == "inductive"


def test_mining_user_errors(tmp_path: Path, loan_csv: Path) -> None:
    ws = tmp_path / "ws"
    run_cli("ingest", str(loan_csv), "--log", "loan", workspace=ws, check=True)
    cases = [
        (["dfg", "nope", "--json"], "no log named 'nope'"),
        (["dfg", "loan", "--filter", "top=x"], "top=x"),
        (["dfg", "loan", "--filter", "case:nope=1"], "nope"),
        (["dfg", "loan", "--paths", "1.5", "--out", str(tmp_path / "m.svg")], "path_threshold"),
        (["discover", "loan", "--out", str(tmp_path / "m.docx")], ".docx"),
        (["discover", "loan", "--noise", "2", "--out", str(tmp_path / "m.svg")], "noise"),
        (["discover", "loan", "--miner", "nope", "--out", str(tmp_path / "m.svg")], "unknown miner"),
        (["discover", "loan", "--filter", "contains=No such activity", "--out", str(tmp_path / "m.svg")],
         "no cases"),
        (["conform", "loan", "nope"], "no model named 'nope'"),
        (["conform", "loan", str(tmp_path / "missing.bpmn")], "missing.bpmn"),
        (["models", "show", "nope"], "nope"),
    ]
    for args, needle in cases:
        proc = run_cli(*args, workspace=ws)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, proc.stderr)
