"""How the package's modules depend on each other at load time, and what each entry point
registers with gin before it parses."""
import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmdistill"


def package_modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of mmdistill (a package is its __init__.py)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _load_time_statements(body):
    """The statements that run while the module loads: the module body, and the bodies of its
    classes and of its if/try/with blocks, but not functions (nor `if TYPE_CHECKING:`)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from _load_time_statements(node.body)
            yield from _load_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _load_time_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _load_time_statements(node.body)


def _with_parents(name: str, modules) -> set[str]:
    """Importing a.b.c runs a, a.b and a.b.c: an edge to each that is one of ours."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def load_time_imports(name: str, path: Path, modules) -> set[str]:
    """The mmdistill modules `name` imports while it loads."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in _load_time_statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_parents(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rsplit(".", 1)[0]
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found |= _with_parents(target, modules)
            for alias in node.names:  # `from pkg import module`
                found |= _with_parents(f"{target}.{alias.name}", modules)
    return found - {name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None when it is acyclic."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle_in_the_package():
    """No module of mmdistill imports, while it loads, a module that imports it back.

    Only load-time imports count (module body, class bodies, if/try/with blocks): they run while
    the importing module is half-built, so a circle of them can meet a module whose names are not
    defined yet, and whether it does depends on which module is imported first. An import inside a
    function runs when the function is called, after every module involved has finished loading,
    so it cannot close such a circle.
    """
    modules = package_modules()
    graph = {name: load_time_imports(name, path, modules) for name, path in modules.items()}
    assert graph["mmdistill.experiment"] >= {"mmdistill.stages", "mmdistill.config"}  # sees imports
    assert "mmdistill.prepare.frames" in graph["mmdistill.prepare.__main__"]  # and relative ones
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_every_module_imports():
    for name in package_modules():
        importlib.import_module(name)


def imports_anywhere(path: Path) -> set[str]:
    """Every absolute module name a file imports, at load time or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module)
    return names


def all_imports(name: str, path: Path, modules) -> set[str]:
    """The mmdistill modules `name` imports anywhere: while it loads or inside a function
    (relative imports resolved, `from pkg import module` counted as importing the module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_parents(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rsplit(".", 1)[0]
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found |= _with_parents(target, modules)
            for alias in node.names:
                found |= _with_parents(f"{target}.{alias.name}", modules)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: all_imports(name, path, modules) for name, path in modules.items()}


def test_no_import_circle_even_inside_functions():
    """An import inside a function hides a circle from load time, not from the design: the two
    modules still need each other. None are left."""
    graph = import_graph()
    assert "mmdistill.ckpt.evaluation" in graph["mmdistill.evaluation"]  # sees imports ...
    assert "mmdistill.train.training_checkpoint" in graph["mmdistill.experiment"]  # ... in functions
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


# (importing package, imported module or package, why not)
FORBIDDEN = [
    ("mmdistill.models", "mmdistill.train", "models are built and loaded without the trainer"),
    ("mmdistill.models", "mmdistill.ckpt", "checkpoints build models, not the other way round"),
    ("mmdistill.ckpt", "mmdistill.train", "train/ keeps only resume and keep-best; ckpt/ is below it"),
    ("mmdistill.eval", "mmdistill.train", "evaluation needs no trainer"),
    ("mmdistill.eval", "mmdistill.experiment", "the eval command shares the session, not the entry point"),
    ("mmdistill.data", "mmdistill.config", "the data tools' gin parsing is mmdistill/commands/data.py"),
    ("mmdistill.data", "mmdistill.demo", "the demo writes data; data does not know the demo"),
]
LIBRARIES = ("mmdistill.data", "mmdistill.models", "mmdistill.ckpt", "mmdistill.eval",
             "mmdistill.train")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_forbidden_import_directions():
    """Directly or through other modules, at load time or in functions. A package's __main__ is
    a command's spelling (`python -m mmdistill.data`), part of the command layer."""
    graph = import_graph()
    assert "mmdistill.data.modalities.specs" in graph["mmdistill.data.dataset"]  # sees the edges

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen and not nxt.endswith(".__main__"):
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    found = []
    for name in graph:
        if name.endswith(".__main__"):
            continue
        reached = reachable(name)
        for source, target, why in FORBIDDEN:
            if _within(name, source):
                found += [f"{name} -> {t} ({why})" for t in sorted(reached) if _within(t, target)]
        if name.startswith(LIBRARIES):
            found += [f"{name} -> {t} (library packages never import the command layer)"
                      for t in sorted(reached) if _within(t, "mmdistill.commands")]
    assert not found, "\n".join(found)


def test_the_forbidden_direction_check_can_fail():
    graph = {"mmdistill.eval.x": {"mmdistill.context"}, "mmdistill.context": {"mmdistill.train.y"}}
    assert find_cycle({**graph, "mmdistill.train.y": {"mmdistill.eval.x"}})
    # the same walk as above, on a graph where eval reaches train through another module
    seen, todo = set(), ["mmdistill.eval.x"]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert "mmdistill.train.y" in seen


def test_config_is_a_leaf():
    assert not [name for name in imports_anywhere(PACKAGE / "config.py") if "mmdistill" in name]


def test_the_data_tools_do_not_reach_into_the_runner():
    allowed = ("mmdistill.data", "mmdistill.progress")
    for path in ("data/check.py", "data/stats.py"):
        ours = {name for name in imports_anywhere(PACKAGE / path) if name.startswith("mmdistill")}
        assert ours and all(name.startswith(allowed) for name in ours), (path, ours)
    assert imports_anywhere(PACKAGE / "data/__main__.py") == {"sys", "mmdistill.commands.data"}


def _defines_configurable(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("configurable", "external_configurable",
                                                             "register"):
            if isinstance(node.value, ast.Name) and node.value.id == "gin":
                return True
    return False


def test_the_one_list_names_every_module_with_a_configurable():
    from mmdistill.commands.configurables import DATA_MODULES, MODULES

    with_configurables = {name for name, path in package_modules().items()
                          if _defines_configurable(path)}
    assert "mmdistill.experiment" in with_configurables  # the scan sees @gin.configurable(...)
    missing = with_configurables - set(MODULES)
    assert not missing, f"add these to mmdistill/commands/configurables.py: {sorted(missing)}"
    assert set(DATA_MODULES) <= set(MODULES) and all(m.startswith("mmdistill.data.")
                                                     for m in DATA_MODULES)


def test_no_command_keeps_its_own_list_of_configurable_modules():
    """run.py, the eval command and the data command import configurables through the one list."""
    for path in (ROOT / "run.py", PACKAGE / "eval/__main__.py", PACKAGE / "commands/data.py"):
        text = path.read_text()
        assert "import_configurables" in text, path
        assert not [line for line in text.splitlines() if "noqa: F401" in line
                    and line.strip().startswith("import mmdistill.")], path


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_run_py_alone_registers_what_every_shipped_gin_file_binds():
    """In a fresh interpreter, so no other test's imports can fill a gap in run.py's list."""
    out = _python(
        "import importlib.util, pathlib, gin\n"
        "spec = importlib.util.spec_from_file_location('run_cli', 'run.py')\n"
        "run = importlib.util.module_from_spec(spec); spec.loader.exec_module(run)\n"
        "run.import_configurables()\n"
        "from mmdistill.config import parse_config\n"
        "files = sorted(pathlib.Path('gin').rglob('*.gin'))\n"
        "for path in files:\n"
        "    gin.clear_config(); parse_config([path], [], finalize=False)\n"
        "print('parsed', len(files))\n")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) >= 10


def test_the_data_check_reads_an_experiment_file_with_the_data_modules_only():
    out = _python(
        "import sys, gin\n"
        "from mmdistill.data.__main__ import main\n"
        "from mmdistill.commands.data import parse_gin\n"
        "import mmdistill.data.stats\n"
        "parse_gin(['gin/demo/distill.gin'], ['fewshot_data/clip_data.on_bad_clip = \"skip\"'])\n"
        "print(gin.query_parameter('fewshot_data/clip_data.on_bad_clip'))\n"
        "print(sorted(m for m in sys.modules if m.startswith('mmdistill')))\n"
        "try:\n"
        "    parse_gin([], ['clip_data.rot = 1'])\n"
        "except SystemExit as err:\n"
        "    print('refused:', err)\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "skip"
    loaded = eval(lines[1])
    assert not [m for m in loaded if not m.startswith((
        "mmdistill.data", "mmdistill.config", "mmdistill.progress", "mmdistill.commands", "mmdistill.checks",
        "mmdistill.rundir", "mmdistill.tracking")) and m != "mmdistill"], loaded
    # the experiment's other bindings are skipped and named, so a misspelled one is visible
    assert "skipped" in out.stderr and "distill, " in out.stderr and "experiment" in out.stderr
    # a data configurable's parameters are still checked
    assert "refused: in --gin_param 'clip_data.rot = 1'" in out.stdout and "'rot'" in out.stdout
