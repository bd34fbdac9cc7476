"""procestra.sandbox: conditions and scripts over case data, with nothing ever passed to eval.

The escape tests run every known trick as a condition, a script and a gateway condition in
a real SpiffWorkflow run, and check both the error and that nothing ran (the marker file
the payload would create does not exist).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procestra.engine.sandbox import (
    LIMITS,
    ConditionError,
    SandboxScriptEngine,
    UnsafeExpressionError,
    compile_expression,
    compile_script,
    evaluate,
    execute,
    is_iso_literal,
)
from procestra.errors import UserError

DATA = {
    "amount": 12_500, "score": 0.71, "channel": "Online", "tags": ["vip", "returning"], "flag": False,
    "applicant": {"name": "Ann", "country": "NL", "income": 4200, "address": {"city": "Delft"}}, "none": None,
}  # fmt: skip


@pytest.mark.parametrize(("expression", "expected"), [
    ("amount < 10_000", False),
    ("amount >= 10000 and score > 0.7", True),
    ("10_000 <= amount < 20_000", True),
    ("not flag or amount > 1e9", True),
    ("channel.lower() == 'online'", True),
    ("channel in ('Online', 'Branch')", True),
    ("'vip' in tags and len(tags) == 2", True),
    ("applicant.country", "NL"),
    ("applicant['income'] * 12", 50_400),
    ("applicant.address.city.upper()", "DELFT"),
    ("applicant.get('missing', 0)", 0),
    ("sorted(applicant.keys())[0]", "address"),
    ("tags[-1]", "returning"),
    ("tags[:1]", ["vip"]),
    ("max(amount, 5) + min([3, 1, 2]) - abs(-1)", 12_500),
    ("round(score * 100)", 71),
    ("sum([1, 2.5]) / 2", 1.75),
    ("int('42') + float('0.5')", 42.5),
    ("str(amount) + ' EUR'", "12500 EUR"),
    ("'high' if amount > 10000 else 'low'", "high"),
    ("none is None", True),
    ("any([flag, amount > 1]) and not all([flag])", True),
    ("amount // 1000 % 10", 2),
    ("2 ** 10", 1024),
    ("{'a': 1}['a'] + [1, 2][1] + (3,)[0]", 6),
    ("channel.startswith('On') and not channel.endswith('x')", True),
    ("' a b '.strip().split(' ')", ["a", "b"]),
])  # fmt: skip
def test_evaluates_conditions_over_case_data(expression, expected):
    assert evaluate(expression, DATA) == expected


def test_variables_are_the_top_level_names_read():
    expr = compile_expression("amount > limit and applicant.income > 0 and len(tags) > 0")
    assert expr.variables == {"amount", "limit", "applicant", "tags"}
    assert compile_script("risk = 'high' if amount > 9 else 'low'\nlevel = risk").assigned == {"risk", "level"}
    assert compile_script("x = 1\ny = x + amount").variables == {"amount"}


def test_scripts_assign_and_branch():
    data = dict(DATA)
    changed = execute("risk = 'high' if amount > 10000 else 'low'\nif risk == 'high':\n    review = True\n"
                      "elif score < 0.5:\n    review = False\nelse:\n    pass\ncount = 1\ncount += 2", data)
    assert changed == {"risk": "high", "review": True, "count": 3}
    assert data["review"] is True and data["amount"] == 12_500


# -- escapes: a clear error, and nothing executed ----------------------------------------------
def escapes(marker: Path) -> list[str]:
    touch = f"__import__('os').system('touch {marker}')"
    return [
        touch,
        f"().__class__.__bases__[0].__subclasses__()[0]('touch {marker}')",
        "().__class__.__bases__[0].__subclasses__()",
        "amount.__class__",
        "applicant.__dict__",
        "channel.__len__()",
        "tags.__class__.__mro__",
        f"(lambda: __import__('os').system('touch {marker}'))()",
        "lambda: 1",
        f"[__import__('os').system('touch {marker}') for _ in [1]]",
        "[x for x in range(10**9)]",
        "{x: 1 for x in ().__class__.__mro__}",
        f"open('{marker}', 'w').write('x')",
        "open('/etc/passwd').read()",
        f"eval(\"__import__('os').system('touch {marker}')\")",
        f"exec(\"open('{marker}', 'w')\")",
        "compile('1', 'x', 'eval')",
        "getattr(amount, 'real')",
        "globals()['__builtins__']",  # globals(), vars(), locals(): only a copy of the case's variables
        "vars(amount)",
        "type(amount)",
        "__builtins__",
        "breakpoint()",
        "'{0.__class__}'.format(amount)",
        "f'{amount.__class__}'",
        "'%s' % amount",
        "9**9**9",
        "10**10**10",
        "2 ** 100000",
        "'a' * 10**9",
        "[1] * 10**9",
        "'x'.join(['a'] * 10**7)",
        "(x := 1)",
        "*tags",
        "b'bytes'",
        "1j",
        "...",
        "amount << 100000",
        "~amount",
        "amount is 5",
        "channel.format(1)",
        "channel.zfill(10**9)",
        "applicant.pop('name')",
        "tags.append(1)",
        "len(tags, key=1)",
        "sorted(tags, key=len)",
    ]


def test_escapes_fail_clearly_and_execute_nothing(tmp_path):
    marker = tmp_path / "pwned"
    for text in escapes(marker):
        with pytest.raises(ConditionError) as info:
            evaluate(text, DATA)
        err = info.value
        assert isinstance(err, UserError)
        assert err.expression == text and err.reason
        quoted = repr(text if len(text) <= 120 else text[:117] + "...")
        assert quoted in str(err), f"the message should quote the expression: {err}"
        assert not marker.exists(), f"{text!r} executed something"


def test_escapes_fail_in_scripts_too(tmp_path):
    marker = tmp_path / "pwned"
    scripts = [f"import os\nos.system('touch {marker}')", f"from os import system\nsystem('touch {marker}')",
               "def f():\n    return f.__globals__", "class A:\n    pass",
               "while True:\n    pass", "with open('x') as f:\n    pass",
               "try:\n    x = 1\nexcept Exception:\n    pass",
               "global x\nx = 1", "del amount.real", "x.y = 1", "x[0] = 1", "__x__ = 1", "len = 1",
               f"x = __import__('os').system('touch {marker}')", "assert False", "raise ValueError()",
               "return 1", "x = yield 1"]  # fmt: skip
    for text in scripts:
        with pytest.raises(ConditionError) as info:
            execute(text, dict(DATA))
        assert info.value.what == "script"
        assert not marker.exists()


def test_unsafe_constructs_are_unsafe_expression_errors_with_a_position():
    with pytest.raises(UnsafeExpressionError) as info:
        compile_expression("amount > 1 and __import__('os')")
    assert info.value.column == 16 and "__import__" in info.value.reason
    assert "at column 16" in str(info.value)
    with pytest.raises(UnsafeExpressionError, match="__class__"):
        compile_expression("().__class__.__bases__")


@pytest.mark.parametrize(("text", "column", "fragment"), [
    ("amount <", 9, "ends too early"),
    ("amount > > 3", 10, "does not parse"),
    ("(amount", 1, "never closed"),
    ("", None, "is empty"),
    ("   ", None, "is empty"),
])  # fmt: skip
def test_syntax_errors_name_the_position(text, column, fragment):
    with pytest.raises(ConditionError) as info:
        compile_expression(text)
    assert fragment in str(info.value)
    assert info.value.column == column


def test_evaluation_errors_name_expression_and_cause():
    with pytest.raises(ConditionError, match=r"'amount > limit'.*unknown variable 'limit' \(case data has: "):
        evaluate("amount > limit", DATA)
    with pytest.raises(ConditionError, match="no field 'zip'"):
        evaluate("applicant.address.zip", DATA)
    with pytest.raises(ConditionError, match="ZeroDivisionError"):
        evaluate("amount / 0", DATA)
    with pytest.raises(ConditionError, match="TypeError"):
        evaluate("channel < 3", DATA)
    with pytest.raises(ConditionError, match="index 5 is out of range"):
        evaluate("tags[5]", DATA)
    with pytest.raises(ConditionError, match="reads a field of a dict"):
        evaluate("amount.real", DATA)
    with pytest.raises(ConditionError, match="must be a string"):
        evaluate(42, DATA)  # type: ignore[arg-type]


def test_sizes_are_bounded():
    with pytest.raises(ConditionError, match="longer than"):
        compile_expression("1" + " + 1" * LIMITS.text)
    with pytest.raises(ConditionError, match="syntax nodes"):
        compile_expression("[" + ",".join(["a"] * (LIMITS.nodes + 10)) + "]")
    with pytest.raises(ConditionError, match="nested more than"):
        compile_expression(" + ".join(["amount"] * (LIMITS.depth + 10)))
    with pytest.raises(ConditionError, match="nested|does not parse"):
        compile_expression("[" * 150 + "]" * 150)
    with pytest.raises(ConditionError, match="statements"):
        compile_script("\n".join(f"x{i} = {i}" for i in range(LIMITS.statements + 1)))
    with pytest.raises(ConditionError, match="grew beyond"):
        execute("s = 'ab'\n" + "s = s + s\n" * 30, {})


def test_iso_literals():
    assert is_iso_literal("PT8H") and is_iso_literal("P2DT3H") and is_iso_literal("R3/PT1H")
    assert is_iso_literal("2026-01-31T09:00:00Z") and is_iso_literal("2026-01-31")
    assert not is_iso_literal("amount") and not is_iso_literal("P") and not is_iso_literal("PT")


# -- SpiffWorkflow --------------------------------------------------------------------------------
GATEWAY_MODEL = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="urn:t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="prep"/>
    <bpmn:scriptTask id="prep" scriptFormat="python"><bpmn:script>{script}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f1" sourceRef="prep" targetRef="gw"/>
    <bpmn:exclusiveGateway id="gw" name="Big?" default="f3"/>
    <bpmn:sequenceFlow id="f2" sourceRef="gw" targetRef="big">
      <bpmn:conditionExpression>{condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f3" sourceRef="gw" targetRef="small"/>
    <bpmn:task id="big"/>
    <bpmn:task id="small"/>
    <bpmn:sequenceFlow id="f4" sourceRef="big" targetRef="end"/>
    <bpmn:sequenceFlow id="f5" sourceRef="small" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"""


def spiff_run(condition: str, amount: int, script: str = "doubled = amount * 2") -> list[str]:
    from xml.sax.saxutils import escape

    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    parser = BpmnParser()
    parser.add_bpmn_str(GATEWAY_MODEL.format(condition=escape(condition), script=escape(script)).encode())
    wf = BpmnWorkflow(parser.get_spec("p"), script_engine=SandboxScriptEngine())
    wf.get_next_task(state=TaskState.READY).data.update({"amount": amount})
    wf.do_engine_steps()
    done = []
    while not wf.completed:
        ready = wf.get_tasks(state=TaskState.READY)
        assert ready, "the workflow is stuck"
        for t in ready:
            done.append(t.task_spec.bpmn_id)
            t.run()
        wf.do_engine_steps()
    assert wf.data["doubled"] == amount * 2 or "doubled" not in script
    return done


def test_spiffworkflow_conditions_and_scripts_run_in_the_sandbox():
    assert spiff_run("doubled > 100", 60) == ["big"]
    assert spiff_run("doubled > 100", 10) == ["small"]


def test_spiffworkflow_never_evals_a_malicious_condition(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafeExpressionError) as info:
        spiff_run(f"__import__('os').system('touch {marker}') == 0", 60)
    assert info.value.element == "gw" and "on element 'gw'" in str(info.value)
    assert not marker.exists()
    with pytest.raises(UnsafeExpressionError) as info:
        spiff_run("amount > 1", 60, script=f"x = open('{marker}', 'w')")
    assert info.value.element == "prep"
    assert not marker.exists()
    with pytest.raises(ConditionError, match="unknown variable 'missing'"):
        spiff_run("missing > 1", 60)


def test_engine_validate_uses_the_sandbox():
    engine = SandboxScriptEngine()
    engine.validate("amount > 3")
    engine.validate("PT8H")
    with pytest.raises(UnsafeExpressionError):
        engine.validate("__import__('os')")


def test_an_iso_literal_is_a_value_for_timers_only() -> None:
    """Before, SpiffWorkflow's adapter returned 'PT0S' as text for any purpose: a gateway condition 'PT0S'
    was a truthy string instead of an unknown name."""
    from procestra.engine.loading import script_engine

    env = script_engine().environment
    assert env.evaluate_as("PT0S", {}, None, "timer") == "PT0S"
    assert env.evaluate_as(" 2026-01-01T09:00:00Z ", {}, None, "timer") == "2026-01-01T09:00:00Z"
    for purpose in ("condition", "loop cardinality", "event payload"):
        with pytest.raises(ConditionError, match="unknown variable 'PT0S'"):
            env.evaluate_as("PT0S", {}, None, purpose)
    assert env.evaluate_as("PT0S", {"PT0S": 0}, None, "condition") == 0  # a name like any other
