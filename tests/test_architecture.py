"""The layout docs/ARCHITECTURE.md describes, held by tests: one front door, no import cycles,
imports at the top of files, the studio on the public API only."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[1]
HEAVY_OPTIONAL = {"librosa", "matplotlib", "music21", "torchcrepe", "fluidsynth", "pretty_midi", "pyloudnorm", "pedalboard", "scipy", "basic_pitch", "mir_eval",
                  "transformers"}
# the command line imports a command's corpus, training, evaluation or benchmark code in that command's
# handler, so that a `generate` imports none of it (0.07 s of every start)
COMMAND_CODE = ("engine.data", "engine.train", "engine.evaluate")


def _modules() -> dict[str, Path]:
    """engine's modules by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported engine module, the import node, whether it sits inside a function) for every import."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            yield target, node, id(node) in inside


def test_no_module_of_the_engine_is_part_of_an_import_cycle():
    modules = _modules()
    graph = {name: {t for t, _, _ in _imports(name, path, modules) if t in modules and t != name} for name, path in modules.items()}
    # Tarjan's strongly connected components: any with two or more modules is a cycle
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles
    assert graph["engine.checkpoints"] <= {"engine.files", "engine.integrity", "engine.paths"}, "loading checkpoints must not need model or training code"


def test_imports_sit_at_the_top_unless_a_heavy_optional_dependency_is_deferred():
    modules = _modules()
    deferred = [(name, target) for name, path in modules.items() for target, _, inside in _imports(name, path, modules)
                if inside and target.split(".")[0] not in HEAVY_OPTIONAL and not (name == "engine.cli" and target.startswith(COMMAND_CODE))]
    assert not deferred, deferred


def test_the_command_line_imports_no_corpus_training_or_evaluation_code_until_a_command_needs_it():
    code = ("import sys, engine.cli; print(sorted(m for m in sys.modules if m.startswith(('engine.data.build', 'engine.train.trainers', "
            "'engine.train.tokens', 'engine.evaluate.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded


def test_the_front_door_exposes_the_api_and_the_studio_uses_nothing_else():
    for name in engine.__all__:
        assert hasattr(engine, name), name
    for mode in ("TextRequest", "HumRequest", "StoryRequest", "ContinueRequest", "InpaintRequest", "StyleRequest"):
        assert mode in engine.__all__
    assert callable(engine.MusicLM.run) and callable(engine.MusicLM.render) and callable(engine.MusicLM.load)
    for path in [*(ROOT / "studio").rglob("*.py"), ROOT / "launch.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine"):
                assert node.module == "engine", f"{path.name} imports {node.module}: the studio uses `engine` only"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("engine.") for a in node.names), path.name


def test_the_engine_never_imports_the_ui():
    modules = _modules()
    for name, path in modules.items():
        assert not any(t.split(".")[0] in ("gradio", "studio") for t, _, _ in _imports(name, path, modules)), name


def test_docs_and_code_refer_only_to_files_the_repository_has():
    """A path written in the docs or the code (engine/…, docs/…, assets/…) names a file or folder that exists."""
    path = re.compile(r"(?<![\w/.-])((?:engine|studio|tests|docs|assets|\.ci)/[\w./-]*\w)")
    texts = [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "assets").rglob("*.md"), *(ROOT / "engine").rglob("*.py"),
             *(ROOT / "studio").rglob("*.py"), *(ROOT / "tests").glob("*.py"), ROOT / "launch.py"]
    missing = [(text.relative_to(ROOT), m.group(1)) for text in texts for m in path.finditer(text.read_text())
               if not (ROOT / m.group(1).rstrip(".")).exists()]
    assert not missing, missing


def test_nothing_is_dated_by_a_numbered_work_period():
    texts = [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "assets").rglob("*.md"), *(ROOT / "engine").rglob("*.py"),
             *(ROOT / "studio").rglob("*.py")]
    dated = [text.relative_to(ROOT) for text in texts if re.search(r"\b[Ss]essions? \d|\bsession-\d", text.read_text())]
    assert not dated, dated
