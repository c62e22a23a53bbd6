# Calls in one direction: no module of lib/dynreg imports, at any depth and even lazily
# inside a function, a module that imports it back. The package's __init__ only defines the
# errors, two entry points that import flow when called and the helpers every part of the
# flow shares, so it is left out: every module imports it (and online calls its dynreg.connect).
import ast
import os

LIB = os.path.join(os.path.dirname(__file__), "..", "lib", "dynreg")


def _imports(path):
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "dynreg":
                found.update("dynreg." + alias.name for alias in node.names)
            elif node.module.startswith("dynreg."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("dynreg."))
    return found


def _graph():
    modules = {"dynreg." + name[:-3] for name in os.listdir(LIB) if name.endswith(".py") and name != "__init__.py"}
    return {m: _imports(os.path.join(LIB, m.split(".")[1] + ".py")) & modules for m in modules}


def test_no_module_imports_its_caller():
    graph = _graph()
    cycles = []

    def visit(node, path):
        for nxt in graph[node]:
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            else:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == [], cycles


def test_the_shared_helpers_are_leaves():
    graph = _graph()
    assert graph["dynreg.net"] <= {"dynreg.codec", "dynreg.clock"}, graph["dynreg.net"]
    # The MQTT transport knows no cloud: each cloud's module names its broker and login.
    assert not graph["dynreg.mqtt"] & {"dynreg.tencent", "dynreg.aliyun", "dynreg.azure"}, graph["dynreg.mqtt"]
    # Each of the flow's parts reaches the shared helpers, never flow itself.
    for name in ("dynreg.tencent", "dynreg.aliyun", "dynreg.azure", "dynreg.mqtt", "dynreg.gateway", "dynreg.online"):
        assert "dynreg.flow" not in graph[name], name
