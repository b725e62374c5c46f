"""The package's import rules, read from the source (every import, also those inside functions):

- the control surface, the MIDI bridge, the parameter model and the engine never reach torch, directly or
  through another module;
- the engine imports neither the control surface nor the models (its synth is handed in);
- the parameter model imports neither the engine nor the control surface (both use it);
- only the CLI imports ``sonolatent.training``.

The runtime checks (``tests/control/test_torch_free.py``, ``tests/midi/test_midi_cli.py``) import
and run the code; this one also sees imports on paths those runs do not take.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sonolatent"
TORCH_FREE = ("sonolatent.control", "sonolatent.midi", "sonolatent.params", "sonolatent.engine")
HEAVY = ("torch", "torchaudio")
#: package -> the packages it may not import (directly; torch is checked through every path above)
FORBIDDEN = {
    "sonolatent.engine": ("sonolatent.control", "sonolatent.models"),
    "sonolatent.params": ("sonolatent.engine", "sonolatent.control", "sonolatent.models"),
}


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = f
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Absolute names of everything ``name`` imports, anywhere in the file, and the packages executed on the way."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules)
    with_parents = set()
    for target in found:
        parts = target.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return with_parents


def graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def torch_paths(g: dict[str, set[str]], start: str) -> list[str]:
    """The import chains from ``start`` to torch (empty when there is none)."""
    chains, seen, todo = set(), {start}, [[start]]
    while todo:
        chain = todo.pop()
        for dep in sorted(g.get(chain[-1], ())):
            if under(dep, HEAVY):
                chains.add(" -> ".join(chain + [dep.split(".")[0]]))
            elif dep in g and dep not in seen:
                seen.add(dep)
                todo.append(chain + [dep])
    return sorted(chains)


def violations(root: Path) -> list[str]:
    g = graph(root)
    problems = []
    for name in sorted(g):
        if under(name, TORCH_FREE):
            problems += [f"{name} reaches torch: {c}" for c in torch_paths(g, name)]
        for pkg, banned in FORBIDDEN.items():
            if under(name, (pkg,)):
                problems += [f"{name} imports {d} ({pkg} may not)" for d in sorted(g[name]) if under(d, banned)]
        if not under(name, ("sonolatent.cli", "sonolatent.training")):
            problems += [f"{name} imports {d} (only sonolatent.cli may)" for d in sorted(g[name])
                         if under(d, ("sonolatent.training",))]
    return problems


def test_the_package_keeps_its_import_rules():
    assert violations(PACKAGE) == []


def test_the_checker_sees_a_lazy_torch_import_two_modules_away_and_a_stray_training_import(tmp_path):
    root = tmp_path / "sonolatent"
    for folder in ("control", "midi", "models", "training", "engine", "cli", "params"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "control" / "server.py").write_text("from ..models import helper\n")
    (root / "models" / "helper.py").write_text("def f():\n    import torch.nn\n")
    (root / "midi" / "ports.py").write_text("import json\n")
    (root / "engine" / "core.py").write_text("from sonolatent.training import loop\n")
    (root / "training" / "loop.py").write_text("")
    (root / "cli" / "train.py").write_text("from ..training.loop import run\n")
    (root / "engine" / "slots.py").write_text("def load():\n    from ..models.helper import f\n")
    (root / "engine" / "runtime.py").write_text("from sonolatent.control import target\n")
    (root / "control" / "target.py").write_text("from ..params import values\n")
    (root / "params" / "values.py").write_text("import math\n")
    (root / "params" / "namespace.py").write_text("from ..engine import core\n")
    found = violations(root)
    assert found == [
        "sonolatent.control.server reaches torch: sonolatent.control.server -> sonolatent.models.helper -> torch",
        "sonolatent.engine.core imports sonolatent.training (only sonolatent.cli may)",
        "sonolatent.engine.core imports sonolatent.training.loop (only sonolatent.cli may)",
        "sonolatent.engine.runtime imports sonolatent.control (sonolatent.engine may not)",
        "sonolatent.engine.runtime imports sonolatent.control.target (sonolatent.engine may not)",
        "sonolatent.engine.slots reaches torch: sonolatent.engine.slots -> sonolatent.models.helper -> torch",
        "sonolatent.engine.slots imports sonolatent.models (sonolatent.engine may not)",
        "sonolatent.engine.slots imports sonolatent.models.helper (sonolatent.engine may not)",
        "sonolatent.params.namespace imports sonolatent.engine (sonolatent.params may not)",
        "sonolatent.params.namespace imports sonolatent.engine.core (sonolatent.params may not)",
    ], found


BENCHMARKS = PACKAGE.parent / "benchmarks"


def benchmark_problems(folder: Path) -> list[str]:
    """Benchmarks are a package run as ``python -m benchmarks.NAME``: no ``tests`` imports, no ``sys.path`` edits."""
    missing = [] if (folder / "__init__.py").exists() else [f"{folder.name}: no __init__.py"]
    problems = []
    for f in sorted(folder.glob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            problems += [f"{f.name}:{node.lineno} imports {n}" for n in names if under(n, ("tests",))]
            if isinstance(node, ast.Attribute) and node.attr == "path" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                problems.append(f"{f.name}:{node.lineno} uses sys.path")
    return missing + sorted(problems)


def test_benchmarks_run_as_a_package_without_tests_or_path_edits():
    assert benchmark_problems(BENCHMARKS) == []


def test_the_benchmark_checker_sees_a_path_edit_and_a_tests_import(tmp_path):
    (tmp_path / "b.py").write_text("import sys\nsys.path.insert(0, '.')\nfrom tests.jackserver import JackServer\n")
    assert benchmark_problems(tmp_path) == [f"{tmp_path.name}: no __init__.py", "b.py:2 uses sys.path",
                                            "b.py:3 imports tests.jackserver"]
