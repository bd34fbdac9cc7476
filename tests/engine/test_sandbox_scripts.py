"""procestra.engine.sandbox: scripts in ordinary Python, bounded in steps, time and memory.

Expected values are worked out by hand. The attack strings are issue 14's, item 2; each is
refused before it allocates, checked by the peak memory of a subprocess (tracemalloc), not
by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from procestra import engine
from procestra.engine import sandbox_lib
from procestra.engine.sandbox import ConditionError, Limits, UnsafeExpressionError, compile_script, evaluate, execute
from procestra.engine.tobe import ToBeModel

DATA = {"nums": [1, 2, 3, 4], "pairs": [["a", 2], ["b", 3]], "items": [["x", 2], ["y", 5]], "name": "Ann",
        "amount": 1234.5, "ratio": 0.25, "tags": ["a", "b"]}  # fmt: skip


@pytest.mark.parametrize(("script", "expected"), [
    ("evens = [x * 2 for x in nums if x % 2 == 0]", {"evens": [4, 8]}),
    ("sq = {k: v * v for k, v in pairs}", {"sq": {"a": 4, "b": 9}}),
    ("s = sorted({x % 3 for x in nums})", {"s": [0, 1, 2]}),
    ("grid = [[i * j for j in range(3)] for i in range(2)]", {"grid": [[0, 0, 0], [0, 1, 2]]}),
    ("total = sum(x for x in nums if x > 2)\nbig = any(x > 3 for x in nums)", {"total": 7, "big": True}),
    ("first, (second, third) = [1, [2, 3]]", {"first": 1, "second": 2, "third": 3}),
    ("a, b = 1, 2\na, b = b, a", {"a": 2, "b": 1}),
    ("total = 0\nfor _name, qty in items:\n    total += qty", {"total": 7, "qty": 5}),
    ("n = 10\nn -= 3\nn *= 2\nn //= 3\nn **= 2\nn %= 7", {"n": 2}),  # 7, 14, 4, 16, 2
    ("i = 0\nfound = -1\nwhile i < 10:\n    i += 1\n    if i % 2:\n        continue\n    if i > 5:\n"
     "        found = i\n        break", {"i": 6, "found": 6}),
    ("for x in [1, 2]:\n    pass\nelse:\n    done = True", {"x": 2, "done": True}),
    ("for x in [1, 2]:\n    break\nelse:\n    done = True", {"x": 1}),
    ('msg = f"{name} owes {amount:,.2f} EUR ({ratio:.0%})"\nr = f"{tags!r}"',
     {"msg": "Ann owes 1,234.50 EUR (25%)", "r": "['a', 'b']"}),
    ("last_two = nums[-2:]\nrev = nums[::-1]", {"last_two": [3, 4], "rev": [4, 3, 2, 1]}),
    ("kind = 'big' if amount > 1000 else 'small'\nhas = 'a' in tags", {"kind": "big", "has": True}),
    # 2026-01-30 is a Friday; three days on is Monday 2 February (weekday 0)
    ("_d = datetime.date(2026, 1, 30) + timedelta(days=3)\nday = _d.isoformat()\nwd = _d.weekday()",
     {"day": "2026-02-02", "wd": 0}),
    # 27 Feb 09:30 to 1 Mar 10:00 in 2026 (28 days in February): two days and half an hour
    ('_due = datetime.datetime.fromisoformat("2026-03-01T10:00:00") - '
     'datetime.datetime.fromisoformat("2026-02-27T09:30:00")\nhours = _due.total_seconds() / 3600', {"hours": 48.5}),
    ("stamp = datetime.datetime(2026, 5, 1, 8, 5, tzinfo=datetime.timezone.utc).strftime('%Y-%m-%d %H:%M')",
     {"stamp": "2026-05-01 08:05"}),
    ("r = math.sqrt(16) + math.floor(2.7) + math.pi * 0", {"r": 6.0}),
    ('_m = re.match(r"(\\w+)-(\\d+)", "INV-2026")\nyear = int(_m.group(2))\nparts = re.split(r",\\s*", "a, b,c")\n'
     'clean = re.sub(r"\\s+", " ", "a   b")', {"year": 2026, "parts": ["a", "b", "c"], "clean": "a b"}),
    ("obj = json.loads('{\"a\": [1, 2]}')\ntext = json.dumps(obj, sort_keys=True)",
     {"obj": {"a": [1, 2]}, "text": '{"a": [1, 2]}'}),
    ('price = str(Decimal("0.10") + Decimal("0.20"))\n'
     'rounded = str(Decimal("2.675").quantize(Decimal("0.01"), rounding=decimal.ROUND_HALF_UP))',
     {"price": "0.30", "rounded": "2.68"}),
    ('pairs2 = list(zip(["a", "b"], [1, 2]))\nidx = [i for i, _c in enumerate("ab")]\n'
     "ok = isinstance(amount, (int, float))\nr = list(range(0, 10, 3))\nn = len(set([1, 1, 2]))",
     {"pairs2": [("a", 1), ("b", 2)], "idx": [0, 1], "ok": True, "r": [0, 3, 6, 9], "n": 2}),
])  # fmt: skip
def test_scripts_accept_ordinary_python(script, expected):
    data = dict(DATA)
    assert execute(script, data) == expected
    assert {k: data[k] for k in expected} == expected


def test_comprehension_and_temporary_names_are_not_case_data():
    expr = compile_script("_t = [x for x in nums]\nsquares = {k: v for k, v in pairs}\nfor i in _t:\n    last = i")
    assert expr.variables == {"nums", "pairs"}
    assert expr.assigned == {"squares", "i", "last"}
    assert evaluate("[n * 2 for n in nums if n > 2]", DATA) == [6, 8]
    annotated = compile_script("total: int = 0\nfor n in nums:\n    total += n")
    assert annotated.variables == {"nums"} and annotated.evaluate(DATA) == {"total": 10, "n": 4}


@pytest.mark.parametrize(("script", "fragment"), [
    ("import os", "imports are not allowed"),
    ("x = [].__class__", "'__class__'"),
    ("x = getattr(name, 'upper')", "calling 'getattr' is not allowed"),
    ("x = eval('1')", "calling 'eval' is not allowed"),
    ("x = exec('1')", "calling 'exec' is not allowed"),
    ("x = open('/etc/passwd')", "calling 'open' is not allowed"),
    ("x = compile('1', 'f', 'eval')", "calling 'compile' is not allowed"),
    ("x = vars(name)", "calling 'vars' is not allowed"),  # vars(), locals(), globals(): a copy of the variables
    ("f = lambda *a: 1", "'*args' and '**kwargs' parameters are not allowed"),
    ("try:\n    x = 1\nexcept Exception:\n    pass", "try-statements are not allowed"),
    ("a, *b = [1, 2, 3]", "'*' in unpacking is not allowed"),
    ("x = (y for y in nums)", "a generator expression can only be a function's argument"),
    ("x = math.__dict__", "'__dict__' is not allowed"),
    ("x = datetime.datetime.now().__class__", "'__class__' is not allowed"),
    ("x = math.factorial(10)", "calling the method 'factorial' is not allowed"),
    ("break", "'break' outside a loop"),
    ("x = f'{name:{width}}'", "format specs computed at run time"),
    ("x = f'{name:>100000}'", "a width or precision above 10,000"),
    ("x: __import__('os').system('id') = 5", "'__import__'"),
    ("name.first = 1", "not to items or fields"),
    ("datetime = 1", "cannot assign to 'datetime'"),
    ("x = isinstance(amount, type)", "isinstance() takes one of"),
])  # fmt: skip
def test_refusals_name_the_construct(script, fragment):
    with pytest.raises(UnsafeExpressionError) as info:
        compile_script(script)
    assert fragment in str(info.value) and info.value.what == "script"


@pytest.mark.parametrize(("script", "fragment"), [
    ("x = datetime.sys", "datetime has no allowed member 'sys'"),
    ("x = re.match(r'(a+)+$', 'aaaa')", "nested quantifiers"),
    ("x = re.match(r'(a)\\1', 'aa')", "backreferences"),
    ("x = re.search(r'(ab|a)*c', 'ab')", "alternatives under a quantifier"),
    ("x = re.search(r'a*a*a*b', 'a' * 5000)", "could take about"),
    ("x = json.loads('[1]', object_hook=1)", "json.loads() takes no keyword 'object_hook'"),
    ("d = datetime.date(2026, 1, 1)", "'d' would hold a date, but case data is JSON"),
    ("s = {1, 2}", "'s' would hold a set"),
    ("x = int(Decimal('1e999999999'))", "int() of a decimal with more than 1300 digits"),
    ("x = f\"{Decimal('1e999999999'):f}\"", "a decimal with an exponent beyond 10,000 written out"),
    ("x = datetime.date(2026, 1, 1).strftime('%1000000Y')", "field widths in date formats"),
    ("a, b = [1, 2, 3]", "cannot unpack 3 values into 2 names"),
    ("x = [1] * 2\nfor a, b in x:\n    pass", "cannot unpack int into 2 names"),
    ("for x in 5:\n    pass", "cannot loop over int"),
    ("x = re.match('(', 'x')", "error: missing ), unterminated subpattern"),
])  # fmt: skip
def test_runtime_refusals_name_what_to_change(script, fragment):
    with pytest.raises(ConditionError) as info:
        execute(script, dict(DATA))
    assert fragment in str(info.value)


def test_loops_are_bounded_by_steps_and_time(monkeypatch):
    with pytest.raises(ConditionError, match=r"more than 100,000 loop iterations and comprehension items"):
        execute("n = 0\nwhile True:\n    n += 1", {})
    with pytest.raises(ConditionError, match="the step limit"):
        evaluate("len([i for i in range(1000000)])", {})
    with pytest.raises(ConditionError, match="the step limit"):
        execute("n = 0\nfor i in range(1000):\n    for j in range(1000):\n        n += 1", {})
    monkeypatch.setattr(sandbox_lib, "LIMITS", Limits(seconds=0.0))
    with pytest.raises(ConditionError, match=r"ran longer than 0 s \(the time limit\)"):
        execute("n = 0\nfor i in range(1000):\n    n += 1", {})
    with pytest.raises(ConditionError, match=r"ran longer than 0 s \(the time limit\)"):
        execute("a = sorted(nums)\nb = sorted(nums)", dict(DATA))  # no loop: checked between statements


# -- issue 14: refused before allocating ---------------------------------------------------------------
ATTACKS = [
    "z = [[0]*1000000]*1000000 == [[0]*1000000]*1000000",
    "z = ('a'*1000000).join('a'*1000)",
    "z = ('a'*1000000).join('a'*100000)",
    "z = str([[[0]*10000]*10000]*10000)",
    "z = sorted([[0]*1000000]*1000000)",
    "x = [0]\nfor i in range(100):\n    x = [x, x]\nz = str(x)",
    "x = [0]\nfor i in range(100):\n    x = [x, x]\nz = x == x",
    "x = [0]\nfor i in range(100):\n    x = [x, x]\nz = json.dumps(x)",
    "x = [0]\nfor i in range(100):\n    x = [x, x]\nz = f'{x}'",
    "t = (0,)\nfor i in range(100):\n    t = (t, t)\nz = len({t})",
    "x = [0]\nfor i in range(100):\n    x = [x, x]",
    "x = 'a' * 1000000\nfor i in range(30):\n    x = x + x",
    "z = list(range(10**12))",
    "z = 2 ** 100000",
    "z = re.search(r'\\d*\\d*\\d*x', '1' * 100000)",
    "z = 'ab'.replace('', 'x' * 1000000)",
    "x = [2**4000] * 1000000\nz = str(x)",
    "x = [0] * 1000000\nz = [x for i in range(50)]",
]
#: Each builds fresh values: refused when the evaluation has built its memory limit (LIMITS.memory).
BUILDERS = [
    "z = [[0] * 1000000 for i in range(1000)]",
    "z = {i: 'x' * 1000000 for i in range(1000)}",
    "\n".join(f"a{i} = [0] * 1000000" for i in range(100)),
    "z = [list(range(1000000)) for i in range(100)]",
]


def test_issue_14_strings_are_refused_before_they_allocate(tmp_path):
    code = textwrap.dedent("""
        import json, sys, tracemalloc
        from procestra.engine.sandbox import ConditionError, execute
        out = []
        for script in json.loads(sys.argv[1]):
            tracemalloc.start()
            try:
                execute(script, {})
                message = None
            except ConditionError as exc:
                message = exc.reason
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            out.append([message, peak])
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(ATTACKS + BUILDERS)], capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    results = json.loads(done.stdout)
    for script, (message, peak) in zip(ATTACKS + BUILDERS, results):
        assert message is not None, f"{script!r} was not refused"
        bound = 40 if script in ATTACKS else 100  # builders may build up to the 64,000,000-byte limit first
        assert peak < bound * 2**20, f"{script!r} allocated {peak / 2**20:.0f} MB before it was refused: {message}"
        assert script in ATTACKS or "the memory limit" in message


# -- through a real worker ---------------------------------------------------------------------------
def scripted(name: str, script: str) -> ToBeModel:
    m = ToBeModel(name)
    start = m.add_event("start", id="StartEvent_1")
    task = m.add_task("Compute", kind="scriptTask", id="Activity_compute", after=start)
    m.set_script(task, script)
    m.add_event("end", id="EndEvent_1", after=task)
    return m


def test_a_runaway_script_fails_its_case_and_the_worker_goes_on(ws):
    scripted("runaway", "n = 0\nwhile n >= 0:\n    n += 1").save(ws)
    scripted("fine", "total = sum(x * x for x in range(4))\nlabel = f'{total:03d}'").save(ws)
    bad = engine.start_case(ws, "runaway", {})
    good = engine.start_case(ws, "fine", {})
    engine.Worker(ws).run(until_idle=True, max_seconds=60)
    failed, completed = engine.get_case(ws, bad), engine.get_case(ws, good)
    assert failed.status == "failed"
    assert "Activity_compute" in (failed.error or "") and "the step limit" in (failed.error or "")
    assert (completed.status, completed.data["total"], completed.data["label"]) == ("completed", 14, "014")


def test_print_goes_to_the_script_log_not_the_case_data(caplog) -> None:
    """SpiffWorkflow's own models debug with print(); it is allowed and logs one bounded line."""
    data = {"value": 3, "quantity": 2}
    with caplog.at_level("INFO", logger="procestra.script"):
        changed = execute('print(f"Value: {value} / Quantity {quantity}", "x" * 5000, sep="|")\ntotal = value * quantity',
                          data)  # fmt: skip
    assert changed == {"total": 6} and data == {"value": 3, "quantity": 2, "total": 6}
    [record] = [r for r in caplog.records if r.name == "procestra.script"]
    assert record.getMessage().startswith("Value: 3 / Quantity 2|xxx") and record.getMessage().endswith(
        "... (5,022 characters)")


def test_locals_vars_and_globals_give_a_copy_of_the_variables_in_scope() -> None:
    """SpiffWorkflow's models test whether a variable exists with ``'x' in locals()``; before, refused."""
    data = {"a": 1}
    assert execute("if 'hey' in locals():\n  hey = True\nelse:\n  something_else = True", data) == {
        "something_else": True}
    assert evaluate("'should_escalate' in vars() or 'should_escalate' in globals()", {"should_escalate": 1}) is True
    assert execute("b = 2\nnames = sorted(vars())", {"a": 1}) == {"b": 2, "names": ["a", "b"]}
    with pytest.raises(UnsafeExpressionError, match="not to items"):
        compile_script("locals()['a'] = 1")
    with pytest.raises(UnsafeExpressionError, match="calling 'locals' is not allowed"):
        compile_script("x = locals(1)")
