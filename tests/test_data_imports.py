"""The data package has no hidden import circle (not even through an import inside a function)
and does not reach into the demo generator."""
from test_imports import PACKAGE, find_cycle, imports_anywhere, package_modules


def _data_graph() -> dict[str, set[str]]:
    modules = {name: path for name, path in package_modules().items() if name.startswith("mmdistill.data")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_anywhere(path):
            parts = imported.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)
        graph[name] = targets - {name}
    return graph


def test_no_import_circle_in_the_data_package_even_inside_functions():
    graph = _data_graph()
    assert "mmdistill.data.clip_types" in graph["mmdistill.data.jpeg_on_device"]  # it sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_data_imports_nothing_of_the_demo():
    offenders = {str(path.relative_to(PACKAGE)): sorted(name for name in imports_anywhere(path)
                                                        if name.startswith("mmdistill.demo"))
                 for path in (PACKAGE / "data").rglob("*.py")}
    assert not {path: names for path, names in offenders.items() if names}
