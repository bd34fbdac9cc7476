"""procestra.engine.expressions: JUEL and FEEL conditions, as Camunda Modeler users write them.

The expected values are worked out by hand from the EL 2.2 specification (sections 1.8-1.10:
coercion of numbers, strings and booleans, null in relational operators, ``empty``) and the
DMN 1.3 FEEL specification (three-valued logic, null from comparisons with null or values
of different types, unary tests and ranges), not from the translator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procestra import engine
from procestra.engine.expressions import language_of, to_python
from procestra.engine.sandbox import ConditionError, compile_expression, evaluate
from procestra.engine.tobe import ToBeModel, validate_model

DATA = {
    "amount": 1500, "limit": 1000.5, "approved": True, "status": "open", "comment": "", "note": None, "tags": [],
    "n_str": "10", "flag_str": "TRUE", "customer": {"tier": "gold", "address": None}, "count": 3,
}  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [
    ("${amount > 1000}", True),
    ("#{approved}", True),
    ("${status == 'open' && amount gt 10}", True),
    ('${status eq "closed" || amount lt 10}', False),
    ("${empty comment}", True),  # '' is empty
    ("${empty note}", True),  # null is empty
    ("${empty tags}", True),  # an empty list is empty
    ("${empty status}", False),
    ("${not approved}", False),
    ("${!approved || count ge 3}", True),
    ("${amount > limit}", True),  # Long against Double: both to Double, 1500.0 > 1000.5
    ("${n_str == 10}", True),  # a String against a Long: the string becomes the Long 10
    ("${n_str > 9}", True),  # as numbers (as strings, "10" < "9")
    ("${flag_str == true}", True),  # Boolean.valueOf("TRUE") is true
    ("${note == null}", True),
    ("${note > 5}", False),  # null in a relational operator: false
    ("${note != null}", False),
    ("${null <= null}", True),  # A==B: <= and >= are true
    ("${customer.tier == 'gold'}", True),
    ("${customer.missing == null}", True),  # a missing map key reads as null
    ("${customer['tier'] ne 'gold'}", False),
    ("${count == 3.0}", True),
    ("${status > 'apple'}", True),  # lexical order
    ("${amount > 1000 ? approved : false}", True),
    ("${-5 < count}", True),
    ("${(amount > 1000) && !(status == 'closed')}", True),
    ("${ amount >= 1500 and amount le 1500 }", True),
])  # fmt: skip
def test_juel_conditions(text, expected):
    assert language_of(text) == "juel"
    assert evaluate(text, DATA) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("=amount > 1000", True),
    ("= approved = true and amount <= 500", False),
    ('=status = "open" or x != null', True),  # x is missing: null, but the left side is true
    ("=amount in [100..500]", False),
    ("=amount in [1000..1500]", True),
    ("=amount in [1000..1500)", False),
    ("=amount in (1500..2000]", False),
    ("=amount in ]1000..1500]", True),
    ("=count in (1, 2, 3)", True),
    ("=count in [1, 2]", False),
    ("=count in > 2", True),
    ("=count in < 3", False),
    ("=count in not(1, 2)", True),
    ("=not(approved)", False),
    ("=note = null", True),
    ("=note != null", False),
    ("=note > 5", False),  # null > 5 is null: not taken
    ("=not(note > 5)", False),  # not(null) is null: not taken either
    ("=note > 5 or approved", True),  # null or true is true
    ("=note > 5 and false", False),
    ("=missing = null", True),  # a missing variable is null
    ("=status = 5", False),  # different types: null
    ("=status != 5", False),  # also null, not true
    ('=customer.tier = "gold"', True),
    ("=customer.address.city = null", True),  # a path through null is null
    ("=count between 1 and 3", True),
    ('=status in ("open", "closed")', True),
    ("=limit > 1000.5", False),
    ("=limit >= 1000.5", True),
    ("=count = 3.0", True),
    ('=status < "p"', True),
])  # fmt: skip
def test_feel_conditions(text, expected):
    assert language_of(text) == "feel"
    assert evaluate(text, DATA) is expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("${status == 5}", "cannot coerce the string 'open' to a whole number"),
    ("${count}", "must give true or false, not int"),
    ("${note}", "must give true or false, not null"),
    ("${amount && true}", "cannot use int as true or false"),
    ("${tags == tags}", "comparison '==' of a list and a list is not supported"),
    ("${amount == 9223372036854775808}", "beyond Java's long"),
    ("=amount", "must give true or false, not int"),
    ("=status", "must give true or false, not str"),
    ("=tags = tags", "lists or contexts is not supported"),
])  # fmt: skip
def test_values_that_cannot_be_compared_exactly_fail_the_condition(text, fragment):
    with pytest.raises(ConditionError) as info:
        evaluate(text, DATA)
    assert fragment in str(info.value) and repr(text) in str(info.value)


@pytest.mark.parametrize(("text", "construct"), [
    ('=date and time("2020-01-01T00:00:00") < due', "FEEL function call 'date and time(...)'"),
    ("=string length(name) > 3", "FEEL function call 'string length(...)'"),
    ("=count(items) > 1", "FEEL function call 'count(...)'"),
    ("=amount + 10 > 100", "FEEL arithmetic '+'"),
    ("=if approved then true else false", "FEEL 'if' expression"),
    ("=some x in items satisfies x > 1", "FEEL 'some' quantifier"),
    ("=items[1] = 2", "FEEL filter 'items[...]'"),
    ("={a: 1}.a = 1", "FEEL context '{...}'"),
    ('=due < @"2024-01-01"', "FEEL temporal literal"),
    ("=x instance of number", "FEEL 'instance of'"),
    ("=1 < x < 3", "FEEL chained comparison"),
    ("=status = 'open'", "FEEL single-quoted string"),
    ("=x > 0.10000000000000001", "FEEL number literal 0.10000000000000001"),
    ("${execution.getVariable('amount') > 5}", "JUEL method call 'execution.getVariable(...)'"),
    ("${amount * 2 > 100}", "JUEL arithmetic '*'"),
    ("${fn:len(x) > 1}", "JUEL function call 'fn:...'"),
    ("${x instanceof y}", "JUEL 'instanceof'"),
    ("${a = 5}", "JUEL EL 3.0 operator '='"),
    ("${x} and more", "JUEL text outside '${...}'"),
    ("${[1, 2]}", "JUEL collection literal"),
])  # fmt: skip
def test_refusals_name_the_element_and_the_construct(text, construct):
    with pytest.raises(ConditionError) as info:
        to_python(text, element="Flow_3")
    message = str(info.value)
    assert f"{construct}" in message and "is not supported in conditions" in message
    assert "on element 'Flow_3'" in message and repr(text) in message
    with pytest.raises(ConditionError, match="is not supported in conditions"):
        compile_expression(text)


def test_python_conditions_are_left_as_they_are():
    for text in ("amount > 1000", "not approved", "a == b"):
        assert language_of(text) == "python" and to_python(text).python == text
    assert to_python("${amount > 1000}").python == "amount > 1000"
    assert to_python("=amount in [100..500]").python == "(amount >= 100) and (amount <= 500)"
    assert compile_expression('=amount > limit and customer.tier = "x"').variables == {"amount", "limit", "customer"}
    # a cardinality or a timer is a value; only a condition must give true or false
    assert evaluate("${duration}", {"duration": "PT1H"}, what="timer") == "PT1H"
    assert evaluate("=n", {"n": 3}, what="loop cardinality") == 3
    with pytest.raises(ConditionError, match="must give true or false"):
        evaluate("${duration}", {"duration": "PT1H"})


# -- in models ------------------------------------------------------------------------------------
def routed(name: str, big: str, small: str | None, *, default: bool = False) -> ToBeModel:
    """start -> gateway -> script "route = 'big'" or "route = 'small'" -> end."""
    m = ToBeModel(name)
    m.declare("amount", "number", required=True)
    m.declare("approved", "boolean", required=True)
    start = m.add_event("start", id="StartEvent_1")
    gw = m.add_gateway("exclusive", id="Gateway_size", after=start)
    end = m.add_event("end", id="EndEvent_1")
    for route, cond in (("big", big), ("small", small)):
        task = m.add_task(route, kind="scriptTask", id=f"Activity_{route}")
        m.set_script(task, f"route = {route!r}")
        m.connect(gw, task, condition=cond, default=default and cond is None)
        m.connect(task, end)
    return m


def test_juel_gateway_runs_through_a_worker(ws):
    routed("juel", "${amount > 1000 && approved}", None, default=True).save(ws)
    cases = {
        (a, ok): engine.start_case(ws, "juel", {"amount": a, "approved": ok})
        for a, ok in ((5000, True), (5000, False), (10, True))
    }
    engine.Worker(ws).run(until_idle=True, max_seconds=60)
    routes = {k: engine.get_case(ws, c) for k, c in cases.items()}
    assert {k: (c.status, c.data.get("route")) for k, c in routes.items()} == {
        (5000, True): ("completed", "big"),
        (5000, False): ("completed", "small"),
        (10, True): ("completed", "small"),
    }
    xml = next(ws.path.glob("process_models/juel/v1/*.bpmn")).read_text(encoding="utf-8")
    assert "${amount &gt; 1000 &amp;&amp; approved}" in xml  # the author's text is kept


def test_feel_gateway_validates_and_runs(ws):
    m = routed("feel", "=amount > 1000", "=amount <= 1000")
    assert [p for p in m.validate() if p.severity == "error"] == []  # exhaustive over the translation
    m.save(ws)
    case = engine.start_case(ws, "feel", {"amount": 1000, "approved": True})
    engine.Worker(ws).run(until_idle=True, max_seconds=60)
    info = engine.get_case(ws, case)
    assert (info.status, info.data["route"]) == ("completed", "small")


def test_feel_validation_needs_a_default_when_not_exhaustive_and_names_unsupported_constructs():
    m = routed("partial", "=amount > 1000", "=amount < 1000")
    assert [(p.code, p.severity) for p in m.validate() if p.code == "no-default"] == [("no-default", "warning")]
    assert [p.code for p in routed("bools", "=approved", "=not(approved)").validate() if p.severity == "error"] == []
    m = routed("bad", "=amount > 1000", None, default=True)
    m.flows[next(f for f in m.flows if m.flows[f].target == "Activity_big")].condition = "=string length(x) > 3"
    errors = [p for p in m.validate() if p.severity == "error"]
    assert [p.code for p in errors] == ["bad-condition"]
    assert "FEEL function call 'string length(...)' is not supported" in errors[0].message
    assert errors[0].message.startswith("flow 'Flow_") and errors[0].element == "Gateway_size"


def test_feel_conditions_in_a_modeler_file_are_validated_as_drawn(tmp_path):
    source = (Path(__file__).parent / "cases" / "claims_camunda.bpmn").read_text(encoding="utf-8")
    feel = source.replace("${amount &gt; 1000}", "=amount &gt; 1000 and status != null").replace(
        ">amount &lt;= 1000<", ">=amount in [0..1000]<"
    )
    path = tmp_path / "claims.bpmn"
    path.write_text(feel, encoding="utf-8")
    problems = [p for p in validate_model(path) if p.element == "Gateway_big"]
    assert sorted(p.code for p in problems) == ["no-default", "unknown-variable", "unknown-variable"]
    assert "'=amount in [0..1000]'" in next(p.message for p in problems if p.code == "no-default")
    assert {p.message.split("uses ")[1].split(",")[0] for p in problems if p.code == "unknown-variable"} == {
        "'amount'",
        "'status'",
    }
