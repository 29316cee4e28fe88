"""The package's shape: modules import only from their own layer or the ones below, no import
circle, and no function longer than a screen. Imports inside functions count too: a lazy import
is still a dependency."""

import ast
import itertools

import pytest

from conftest import REPO

# Lowest first. A module may import from its own layer and the layers before it.
LAYERS = [
    ["kp_tf", "kp_tf.config", "kp_tf.cli", "kp_tf.progress", "kp_tf.conventions"],
    ["kp_tf.pretrained"],
    ["kp_tf.layers", "kp_tf.losses", "kp_tf.viz"],
    ["kp_tf.data"],
    ["kp_tf.models"],
    ["kp_tf.run_folder"],
    ["kp_tf.training"],
    ["kp_tf.serving", "kp_tf.inference", "kp_tf.tflite_export", "kp_tf.animation"],
    ["kp_tf.evaluation"],
    ["kp_tf.stages"],
    ["kp_tf.make_tfrecords", "kp_tf.train", "kp_tf.export", "kp_tf.predict", "kp_tf.evaluate",
     "kp_tf.fvd", "kp_tf.animate", "kp_tf.interpolate"],
]
MAX_FUNCTION_LINES = 80


def _modules() -> dict:
    """{dotted module name: its ast}, for every file of the package."""
    out = {}
    for path in sorted((REPO / "kp_tf").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imports(name: str, tree: ast.AST) -> set:
    """The kp_tf modules `name` imports, anywhere in the file."""
    package = name if tree is not None and name.count(".") == 0 else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _layer(module: str) -> int:
    best = None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[0]


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: {m for m in _imports(name, tree) if m in modules and m != name}
            for name, tree in modules.items()}


def test_no_module_imports_from_a_layer_above(graph):
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
              for a, targets in graph.items() for b in targets
              if b != "kp_tf" and _layer(b) > _layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_circle(graph):
    # Tarjan-free: a module is on a circle when it reaches itself.
    def reaches(start):
        seen, stack = set(), list(graph[start])
        while stack:
            node = stack.pop()
            if node == start:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    circles = [m for m in graph if m != "kp_tf" and reaches(m)]
    assert not circles, circles


def test_no_function_longer_than_a_screen():
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_the_layers_name_every_module_once():
    names = list(itertools.chain.from_iterable(LAYERS))
    assert len(names) == len(set(names))
    for module in _modules():
        _layer(module)
