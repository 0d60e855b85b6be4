"""The layout's two rules, read from the source with `ast` (nothing is imported):
the pipeline never imports presentation or the command line, and hil's modules import
each other without a cycle."""

import ast
from pathlib import Path

import hil

PACKAGE = Path(hil.__file__).parent
PIPELINE = ("hil.run", "hil.hw", "hil.lab", "hil.stats", "hil.model", "hil.store", "hil.firmware")
PRESENTATION = ("hil.report", "hil.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (a function's late import counts too)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from hil.report import html`
    return found


def graph() -> dict[str, set[str]]:
    """hil's modules and which of hil's modules each imports."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_sees_the_package():
    edges = graph()
    assert "hil.run.runner" in edges and "hil.report.html" in edges and "hil.cli" in edges
    assert "hil.run.session" in edges["hil.run.runner"]  # a `from hil.run.session import ...`
    assert "hil.report.html" in edges["hil.report.run_files"]  # a `from hil.report import html as ...`
    assert "hil.run.verify" in edges["hil.cli"]  # an import inside a function


def test_the_pipeline_never_imports_presentation():
    offending = sorted(f"{module} imports {target}" for module, targets in graph().items()
                       if within(module, PIPELINE) for target in targets if within(target, PRESENTATION))
    assert not offending, "the pipeline must not depend on how results are shown:\n" + "\n".join(offending)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_cycles_are_found_where_there_are_some():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_hils_modules_import_each_other_without_a_cycle():
    found = cycles(graph())  # a package's __init__ is a module too: a cycle through one counts
    assert not found, "import cycles: " + "; ".join(" <-> ".join(group) for group in found)
