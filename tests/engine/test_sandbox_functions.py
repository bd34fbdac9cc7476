"""Functions, ``del`` and item assignment in sandboxed scripts (issue 13: SpiffWorkflow's own models use them).

Each behaves as SpiffWorkflow's script engine (``exec`` over the task data) does: a function is
dropped from the case data after the script, ``del x`` removes ``x`` from it, and ``d[k] = v``
changes the case's dict. Escape attempts through a function are refused.
"""

from __future__ import annotations

import pytest

from procestra import engine
from procestra.engine.sandbox import ConditionError, UnsafeExpressionError, compile_expression, compile_script, execute
from procestra.engine.sandbox_functions import CALL_DEPTH
from procestra.engine.tobe import ToBeModel

RECURSIVE = """
def fact(n, acc=1):
    if n <= 1:
        return acc
    return fact(n - 1, acc * n)

def outer(k):
    base = k
    def inner(m, *, plus=0):
        return base + m + plus + offset
    return inner(1, plus=10)

offset = 100
r = fact(5)
kw = fact(n=3)
o = outer(2)
square = lambda x, y=2: x ** y
s = square(3)
"""


def test_functions_run_as_python_and_never_reach_the_case_data():
    data = {"fact": "old value"}
    changed = execute(RECURSIVE, data)
    assert changed == {"offset": 100, "r": 120, "kw": 6, "o": 113, "s": 9}
    assert data == changed  # 'fact' and 'square' held functions: dropped, as SpiffWorkflow drops callables
    expr = compile_script(RECURSIVE)
    assert expr.variables == set() and "fact" not in expr.assigned
    counted = compile_script("def f():\n    n = 0\n    n += 1\n    return n + later\nlater = 1\nx = f()")
    assert counted.variables == set() and counted.assigned == {"later", "x"}  # locals and later globals: not case data


def test_function_locals_follow_pythons_rules():
    data = {"x": 1}
    assert execute("def f():\n    x = 5\n    return x\ny = f()", data) == {"y": 5} and data["x"] == 1
    with pytest.raises(ConditionError, match="unknown variable 'x'"):  # Python: UnboundLocalError
        execute("def f():\n    y = x\n    x = 2\n    return y\nz = f()", {"x": 1})
    assert execute("def f(a, b=2):\n    return a - b\nv = [f(5), f(5, 1), f(b=1, a=3)]", {}) == {"v": [3, 4, 2]}
    for call, fragment in (("f()", "missing required argument 'a'"), ("f(1, 2, 3)", "takes 2 positional"),
                           ("f(1, c=3)", "unexpected keyword argument 'c'"), ("f(1, a=3)", "multiple values")):  # fmt: skip
        with pytest.raises(ConditionError, match=fragment):
            execute(f"def f(a, b=2):\n    return a\nv = {call}", {})


def test_del_removes_variables_and_items():
    data = {"item": {"a": 1}, "keep": 1}
    changed = execute("items = [item] * 2\ndel(item)\nlst = [1, 2, 3]\ndel lst[0]\nd = {'a': 1, 'b': 2}\n"
                      "del d['a']\nkeep2 = 'item' in vars()", data)  # fmt: skip
    assert changed == {"items": [{"a": 1}] * 2, "lst": [2, 3], "d": {"b": 2}, "keep2": False}
    assert data == {"keep": 1, **changed}
    with pytest.raises(ConditionError, match="cannot delete 'nope': no such variable"):
        execute("del nope", {})
    with pytest.raises(ConditionError, match="no key 'z' to delete"):
        execute("d = {}\ndel d['z']", {})
    for text, fragment in (("del amount.real", "del takes variable names and items"), ("del x[1:2]", "not fields or "
                           "slices"), ("del len", "cannot delete 'len'")):  # fmt: skip
        with pytest.raises(UnsafeExpressionError, match=fragment):
            compile_script(text)


def test_item_assignment_changes_the_case_and_is_checked_to_be_json():
    data = {"testvar": {"a": 1}, "rows": [{"x": 1}, {"x": 2}]}
    changed = execute("testvar['new'] = 'Test'\nfor _r in rows:\n    _r['y'] = _r['x'] * 10", data)
    assert changed == {"testvar": {"a": 1, "new": "Test"}}
    assert data["rows"] == [{"x": 1, "y": 10}, {"x": 2, "y": 20}]
    with pytest.raises(ConditionError, match="'rows' would hold a date"):  # changed through an alias: still checked
        execute("_r = rows[0]\n_r['when'] = datetime.date(2026, 1, 1)", {"rows": [{"x": 1}]})
    with pytest.raises(ConditionError, match="index 5 is out of range"):
        execute("lst = [1]\nlst[5] = 2", {})
    with pytest.raises(UnsafeExpressionError, match="not to items or fields of other values"):
        compile_script("locals()['a'] = 1")


@pytest.mark.parametrize(("script", "fragment"), [
    ("def f():\n    return 1\nx = f.__globals__", "'__globals__'"),
    ("def f():\n    return 1\nx = f.__code__", "'__code__'"),
    ("def f():\n    return 1\nx = f.__closure__", "'__closure__'"),
    ("def f():\n    return 1\nx = f.__defaults__", "'__defaults__'"),
    ("def f(x=__import__('os')):\n    return x", "'__import__'"),
    ("def f(x=().__class__):\n    return x", "'__class__'"),
    ("def g():\n    yield 1", "yield is not allowed"),
    ("def f():\n    global x\n    x = 1", "global is not allowed"),
    ("def f(*args):\n    return args", "'*args' and '**kwargs'"),
    ("def f(**kw):\n    return kw", "'*args' and '**kwargs'"),
    ("def d(fn):\n    return fn\n@d\ndef f():\n    return 1", "decorators are not allowed"),
    ("def __init__():\n    return 1", "cannot define a function named '__init__'"),
    ("def len(x):\n    return 1", "cannot define a function named 'len'"),
    ("def f(__class__):\n    return 1", "the parameter name '__class__'"),
    ("async def f():\n    return 1", "async functions are not allowed"),
    ("x = (lambda: 1)()", "only named functions and methods can be called"),
    ("x = g()", "calling 'g' is not allowed"),
    ("for i in [1]:\n    def f():\n        break", "'break' outside a loop"),
    ("return 1", "'return' outside a function"),
    ("def f():\n    return 1\nf.x = 1", "not to items or fields"),
])  # fmt: skip
def test_escapes_through_functions_are_refused(script, fragment):
    with pytest.raises(UnsafeExpressionError) as info:
        compile_script(script)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("script", "fragment"), [
    ("def f():\n    return 1\nx = f.name", ".name reads a field of a dict"),
    ("def f(g):\n    return g.gi_frame\nx = f(y for y in [1])", ".gi_frame reads a field of a dict"),
    ("def f():\n    return 1\nx = str(f)", "str() of a function"),
    ("def f(m):\n    return 'b'\nx = re.sub('a', f, 'aa')", "re.sub() takes a string replacement"),
    ("def f(a, b):\n    return 1\nx = sorted([f, f])", "TypeError"),
    ("def f():\n    return 1\nx = [f]", "'x' would hold a ScriptFunction"),
    ("def f(n):\n    return f(n + 1)\nx = f(0)", f"more than {CALL_DEPTH} calls deep"),
    ("def f():\n    n = 0\n    while True:\n        n += 1\nf()", "the step limit"),
    ("x = f()\ndef f():\n    return 1", "'f' is case data here, not a function"),
])  # fmt: skip
def test_functions_are_opaque_and_bounded_at_run_time(script, fragment):
    with pytest.raises(ConditionError) as info:
        execute(script, {"f": 1})
    assert fragment in str(info.value)


def test_conditions_may_not_define_functions():
    with pytest.raises(UnsafeExpressionError, match="lambda functions are not allowed here"):
        compile_expression("(lambda: 1)")


def test_a_script_defining_a_function_runs_through_the_worker(ws):
    """SpiffWorkflow's ScriptTest.bpmn: a script defining a function, changing an item and deleting a name."""
    m = ToBeModel("functions")
    start = m.add_event("start", id="StartEvent_1")
    task = m.add_task("Compute", kind="scriptTask", id="Activity_compute", after=start)
    m.set_script(task, "def my_function():\n    my_fun_var = 1\n\ntestvar['new'] = 'Test'\n"
                       "sample = [x['y'] for x in testvar2 if x['x'] > 1]\ndel gone")  # fmt: skip
    m.add_event("end", id="EndEvent_1", after=task)
    for name in ("testvar", "testvar2", "gone"):
        m.declare(name)
    m.save(ws)
    case = engine.start_case(ws, "functions", {"testvar": {"a": 1}, "testvar2": [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}],
                                               "gone": 1})  # fmt: skip
    engine.Worker(ws).run(until_idle=True, max_seconds=60)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert info.data == {"testvar": {"a": 1, "new": "Test"}, "testvar2": [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}],
                         "sample": ["b"]}  # fmt: skip
