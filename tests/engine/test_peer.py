"""The peer suite: each outside BPMN file runs through a real Worker and in SpiffWorkflow directly.

The manifest (``peer_cases``) says per (file, process) what Procestra does today: "same" (completed
tasks, final status and case data equal SpiffWorkflow's), "refused" at validation naming the element,
or a known difference, which is an ``xfail(strict=True)`` so it fails once fixed and the manifest is
updated. A crash of either side fails the test.
"""

from __future__ import annotations

from pathlib import Path

import peer
import peer_cases
import pytest


def _param(sc: peer.Scenario) -> object:
    marks = [pytest.mark.xfail(strict=True, raises=peer.KnownDifference, reason=sc.reason)] \
        if sc.expect == "differs" else []  # fmt: skip
    return pytest.param(sc, id=sc.key.removeprefix("spiffworkflow/"), marks=marks)


@pytest.mark.parametrize("sc", [_param(sc) for sc in peer_cases.CASES])
def test_the_file_runs_as_in_spiffworkflow(sc: peer.Scenario, tmp_path: Path) -> None:
    result = peer.run(sc, tmp_path)
    if sc.expect == "same":
        assert result == "same"
    elif sc.expect == "refused":
        assert result.startswith("refused: ") and sc.reason in result, result
    else:
        assert result.startswith("differs: "), f"{sc.key} no longer differs ({result}); update peer_cases"
        raise peer.KnownDifference(result)


def test_the_manifest_names_each_file_once_per_process_and_only_files_we_keep() -> None:
    keys = [sc.key for sc in peer_cases.CASES]
    assert len(keys) == len(set(keys))
    for sc in peer_cases.CASES:
        assert (peer.DATA / sc.file).is_file(), sc.file
        assert sc.expect in ("same", "refused", "differs"), sc.key
        assert sc.expect == "same" or sc.reason, f"{sc.key}: a refusal or difference needs its reason"
