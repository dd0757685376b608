"""The package's shape, checked: layers import only downward, nobody reaches into another
package's private modules, and no function grows past a screenful of code, docstring aside (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mphate"

# what each part of the package may import from mphate (besides itself and the shared
# utilities every part may use); the pipeline order, left to right
SHARED = {"mphate.runtime", "mphate.paths", "mphate.optional", "mphate._compat"}
ALLOWED = {
    "traces": set(),
    "embed": {"traces"},
    "metrics": {"traces", "embed"},
    "capture": {"traces"},
    "plot": {"traces", "embed", "metrics"},
    "live": {"traces", "embed", "metrics", "plot", "capture"},
    "runs": {"traces", "embed", "metrics", "plot"},
    "experiments": {"traces", "embed", "metrics", "plot", "capture", "runs"},
    "cli": {"traces", "embed", "metrics", "plot", "capture", "experiments", "runs", "live"},
}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _imports(path: Path):
    """(line, imported module name) of every mphate import in a file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # "from mphate.embed import kernel" imports a module
                yield node.lineno, f"{node.module}.{alias.name}"


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to ("embed", "cli", ...)."""
    return module.split(".")[1] if module.count(".") else ""


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative / "__init__.py").exists()


MODULES = dict(_modules())


def test_no_module_imports_another_packages_private_module():
    offences = []
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for line, imported in _imports(path):
            if not imported.startswith("mphate.") or not _is_module(imported):
                continue
            owner, leaf = imported.rsplit(".", 1)
            if leaf.startswith("_") and not leaf.startswith("__") and imported != "mphate._compat" \
                    and not (package == owner or package.startswith(owner + ".")):
                offences.append(f"{path.relative_to(SRC)}:{line} imports {imported}")
    assert not offences, "\n".join(offences)


def test_layers_import_only_what_comes_before_them():
    offences = []
    for name, path in MODULES.items():
        part = _part(name)
        if part not in ALLOWED:
            continue
        for line, imported in _imports(path):
            if not imported.startswith("mphate.") or imported in SHARED:
                continue
            other = _part(imported)
            if other and other != part and other in ALLOWED and other not in ALLOWED[part]:
                offences.append(f"{path.relative_to(SRC)}:{line} ({part}) imports {imported} ({other})")
    assert not offences, "\n".join(offences)


def test_every_module_belongs_to_a_known_part():
    top_level = {_part(name) for name in MODULES if name.count(".")}
    unknown = top_level - set(ALLOWED) - {m.split(".")[1] for m in SHARED} - {"__main__"}
    assert not unknown, f"new top-level parts need a place in ALLOWED and in docs/architecture.md: {unknown}"


@pytest.mark.parametrize("limit", [80])
def test_no_function_is_longer_than_a_screenful(limit):
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    length -= body[0].end_lineno - body[0].lineno + 1  # the docstring is not code
                if length > limit:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)
