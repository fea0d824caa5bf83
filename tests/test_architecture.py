"""faceblur's modules import one way: no import circle, and no module imports a layer above it.

Imports inside functions count too: a function-level import only defers a circle to the first
call, and a layer that reaches up is still tied to what sits above it. So do the
'faceblur.module:function' strings that `jobs` imports by name.
"""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "faceblur"

# Lowest first. A module belongs to the layer of its longest listed prefix; a module may import
# its own layer and the ones below, never one above.
LAYERS = (
    ("faceblur.errors", "faceblur.storage", "faceblur.registry", "faceblur.images",
     "faceblur.console"),
    ("faceblur.ops",),
    ("faceblur.models",),
    ("faceblur.losses", "faceblur.metrics", "faceblur.blur_realism"),
    ("faceblur.data", "faceblur.image_grid"),
    ("faceblur.detectors",),
    ("faceblur.train",),
    ("faceblur.inference",),
    ("faceblur.evaluate",),
    ("faceblur.pipeline", "faceblur.jobs"),
    ("faceblur",),  # the package itself: the notebook API over everything
)


ENTRY_POINT = re.compile(r"faceblur(\.\w+)*:\w+")


def _module_names() -> dict[str, pathlib.Path]:
  names = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    names[".".join(parts)] = path
  return names


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
  """The faceblur module that importing `name` loads (its longest known prefix)."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def import_graph() -> dict[str, set[str]]:
  """Module -> the faceblur modules it imports anywhere in its body."""
  modules = _module_names()
  graph: dict[str, set[str]] = {name: set() for name in modules}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
          ENTRY_POINT.fullmatch(node.value):
        targets = [node.value.partition(":")[0]]
      elif isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(anchor + ([base] if base else []))
        targets = [f"{base}.{alias.name}" for alias in node.names]
      else:
        continue
      for target in targets:
        module = _resolve(target, modules) if target.startswith("faceblur") else None
        if module and module != name:
          graph[name].add(module)
  return graph


def layer_of(module: str) -> int:
  matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS) for prefix in prefixes
             if module == prefix or (prefix != "faceblur" and module.startswith(prefix + "."))]
  assert matches, f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py"
  return max(matches)[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One circle through each strongly connected component of more than one module (Tarjan)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  components: list[set[str]] = []

  def visit(node: str) -> None:
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for successor in sorted(graph[node]):
      if successor not in index:
        visit(successor)
        low[node] = min(low[node], low[successor])
      elif successor in on_stack:
        low[node] = min(low[node], index[successor])
    if low[node] == index[node]:
      component = set()
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.add(member)
        if member == node:
          break
      if len(component) > 1:
        components.append(component)

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return [_circle_in(graph, component) for component in components]


def _circle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
  """A shortest path from the component's first module back to itself, inside it."""
  start = min(component)
  paths = {start: [start]}
  frontier = [start]
  while frontier:
    following = []
    for node in frontier:
      for successor in sorted(graph[node] & component):
        if successor == start:
          return paths[node] + [start]
        if successor not in paths:
          paths[successor] = paths[node] + [successor]
          following.append(successor)
    frontier = following
  raise AssertionError("a strongly connected component without a circle")


def test_graph_sees_function_level_imports_and_submodules():
  graph = import_graph()
  assert "faceblur.train.cyclegan" in graph["faceblur.jobs"]  # 'module:function'
  assert "faceblur.train.partitioning" in graph["faceblur.jobs"]  # inside a function
  assert "faceblur.detectors.mtcnn" in graph["faceblur.detectors"]  # inside a function
  assert "faceblur.ops.cpu_convolutions" in graph["faceblur.ops"]  # `from package import module`


def test_no_import_circle():
  circles = _cycles(import_graph())
  assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_module_imports_a_layer_above_it():
  upward = [f"{module} -> {target}" for module, targets in sorted(import_graph().items())
            for target in sorted(targets) if layer_of(target) > layer_of(module)]
  assert not upward, "imports that reach up a layer: " + "; ".join(upward)


def test_the_checks_catch_a_circle_and_an_upward_import():
  graph = {"faceblur.metrics": {"faceblur.evaluate.evaluation"},
           "faceblur.evaluate.evaluation": {"faceblur.metrics"}}
  assert _cycles(graph) == [["faceblur.evaluate.evaluation", "faceblur.metrics",
                             "faceblur.evaluate.evaluation"]]
  assert layer_of("faceblur.evaluate.evaluation") > layer_of("faceblur.metrics")
