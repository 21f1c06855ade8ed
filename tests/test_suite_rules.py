"""The suite's own rules, read from its source: no test decides an outcome by a fixed sleep or by
how much time passed. Waits go through conftest.wait_until, whose deadline only bounds a hang;
clock readings may be printed as figures, never asserted on."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("time", "monotonic_ns"),
          ("time", "time_ns"), ("time", "perf_counter_ns")}
SLEEPS = {"sleep", "wait_for_timeout"}
WAITER = ("conftest.py", "wait_until")  # the one function allowed to sleep and read the clock


def suite_modules() -> list[Path]:
    return sorted([TESTS / "conftest.py", *TESTS.glob("test_*.py")])


def dotted(call: ast.Call) -> tuple[str, str] | None:
    """("time", "sleep") for time.sleep(...), ("", "sleep") for sleep(...)."""
    function = call.func
    if isinstance(function, ast.Attribute):
        owner = function.value
        return (owner.id if isinstance(owner, ast.Name) else "", function.attr)
    return ("", function.id) if isinstance(function, ast.Name) else None


def enclosing_functions(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node's innermost enclosing function's name."""
    owners = {}
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                owners[node] = function.name  # inner functions come later in the walk and win
    return owners


def fixed_waits(path: Path) -> list[str]:
    """Sleeps and fixed waits (Event().wait(1.0), page.wait_for_timeout) outside the waiter."""
    tree = ast.parse(path.read_text())
    owners = enclosing_functions(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (name := dotted(node)) is None:
            continue
        fixed_event_wait = name[1] == "wait" and any(isinstance(a, ast.Constant) for a in node.args)
        if (name[1] in SLEEPS or fixed_event_wait) and (path.name, owners.get(node)) != WAITER:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def timed_asserts(path: Path) -> list[str]:
    """Asserts on a clock reading, or on a name computed from one (followed through assignments)."""
    tree = ast.parse(path.read_text())
    owners = enclosing_functions(tree)
    clocked: set[str] = set()

    def reads_clock(node: ast.AST) -> bool:
        return any((isinstance(n, ast.Call) and dotted(n) in CLOCKS) or (isinstance(n, ast.Name) and n.id in clocked)
                   for n in ast.walk(node))

    assignments = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))]
    for _ in range(len(assignments)):  # until no new name is found
        before = len(clocked)
        for assignment in assignments:
            if assignment.value is not None and reads_clock(assignment.value):
                targets = assignment.targets if isinstance(assignment, ast.Assign) else [assignment.target]
                clocked |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        if len(clocked) == before:
            break
    return [f"{path.name}:{node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
            if isinstance(node, ast.Assert) and reads_clock(node.test) and (path.name, owners.get(node)) != WAITER]


def test_no_test_waits_a_fixed_time():
    found = [wait for path in suite_modules() for wait in fixed_waits(path)]
    assert not found, "wait on an event with conftest.wait_until instead of a fixed time:\n" + "\n".join(found)


def test_no_test_asserts_on_elapsed_time():
    found = [line for path in suite_modules() for line in timed_asserts(path)]
    assert not found, "print timings as figures; assert on behaviour:\n" + "\n".join(found)


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks themselves fail on the patterns they name."""
    bad = tmp_path / "test_bad.py"
    bad.write_text("import time, threading\n"
                   "def test_x(page):\n"
                   "    started = time.monotonic()\n"
                   "    time.sleep(1)\n"
                   "    threading.Event().wait(1.0)\n"
                   "    page.wait_for_timeout(500)\n"
                   "    elapsed = time.monotonic() - started\n"
                   "    seconds = round(elapsed, 1)\n"
                   "    assert seconds < 2\n"
                   "    assert time.perf_counter() > 0\n")
    assert len(fixed_waits(bad)) == 3
    assert [line.split(": ", 1)[1] for line in timed_asserts(bad)] == ["assert seconds < 2",
                                                                       "assert time.perf_counter() > 0"]
