# A mip index of dynreg as .mpy, for boards on stock firmware (`make mip-index`):
#   .venv/bin/python tools/mip_index.py [--out build/mip-index]
# The layout is micropython-lib's (its tools/build.py; mip reads it in
# micropython/mip/mip/__init__.py):
#   package/6/dynreg/latest.json, package/6/dynreg/<version>.json   {"v": 1, "hashes": [[path, hash]], "version"}
#   package/py/dynreg/...                                            the same with the .py files
#   package/{6,py}/umqtt.simple/...                                  the dependency package.json names
#   file/<hash[:2]>/<hash>                                           each file, named by its sha256's first 8 digits
#   dynreg.json                                                      {"urls": [[path, "file/.."]]}: by URL, no index
# manifest.py is evaluated as build.py does (MicroPython's own tools/manifestfile.py,
# MODE_COMPILE), so the package holds dynreg's modules, umqtt.simple (its require()) and the
# ssl module umqtt.simple requires, each tagged with its version and compiled by the pinned
# mpy-cross at its manifest's opt level, as the firmware freezes them. Then, on the board:
#   mip.install("dynreg", index="http://HOST:PORT")         or   mip.install("http://HOST:PORT/dynreg.json")
#   mpremote mip install --index http://HOST:PORT dynreg
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtime import MPY_CROSS, ROOT, source_dir  # noqa: E402

PACKAGE = "dynreg"
HASH_DIGITS = 8  # build.py's default prefix


def mpy_version():
    # "mpy-cross emitting mpy v6.3": the index's folder is the major version, what a board's
    # sys.implementation._mpy & 0xff gives.
    text = subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True, check=True).stdout
    return text.rsplit("mpy v", 1)[1].split(".")[0].strip()


def manifest_files(path):
    # (version, [(target path, source path, metadata, opt)]) of a manifest, as build.py
    # evaluates one: the files of what it require()s included.
    import manifestfile

    manifest = manifestfile.ManifestFile(manifestfile.MODE_COMPILE,
                                         {"MPY_LIB_DIR": os.path.join(source_dir(), "lib", "micropython-lib")})
    manifest.execute(path)
    return manifest.metadata().version, [(f.target_path, f.full_path, f.metadata, f.opt) for f in manifest.files()]


def put(out, data):
    # file/<hash[:2]>/<hash>; returns the short hash.
    short = hashlib.sha256(data).hexdigest()[:HASH_DIGITS]
    path = os.path.join(out, "file", short[:2], short)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() != data:
                raise SystemExit("mip index: two files share the hash prefix %s" % short)
    with open(path, "wb") as f:
        f.write(data)
    return short


def write_json(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


def packages():
    # dynreg (with umqtt.simple and its ssl, as build.py lists a package's requirements), and
    # umqtt.simple alone: the dependency package.json names, for `mip install` of package.json.
    mpylib = os.path.join(source_dir(), "lib", "micropython-lib")
    return [(PACKAGE, os.path.join(ROOT, "manifest.py")),
            ("umqtt.simple", os.path.join(mpylib, "micropython", "umqtt.simple", "manifest.py"))]


def build(out):
    sys.path.insert(0, os.path.join(source_dir(), "tools"))
    import manifestfile

    if os.path.isdir(out):
        shutil.rmtree(out)
    mpy = mpy_version()
    made = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package, manifest in packages():
            version, files = manifest_files(manifest)
            hashes = {mpy: [], "py": []}
            for target, source, metadata, opt in files:
                with manifestfile.tagged_py_file(source, metadata) as tagged:
                    with open(tagged, "rb") as f:
                        hashes["py"].append([target, put(out, f.read())])
                    compiled = os.path.join(tmp, "out.mpy")
                    subprocess.run([MPY_CROSS, "-s", target, "-O%d" % (opt or 0), "-o", compiled, tagged], check=True)
                    with open(compiled, "rb") as f:
                        hashes[mpy].append([target[:-3] + ".mpy", put(out, f.read())])
            for flavour, listed in hashes.items():
                doc = {"v": 1, "hashes": listed, "version": version}
                for name in ("latest", version):
                    write_json(os.path.join(out, "package", flavour, package, name + ".json"), doc)
            made[package] = (version, hashes[mpy])
    # By URL: dynreg's .mpy files, named relative to this file (mip resolves them so).
    version, listed = made[PACKAGE]
    urls = [[target, "file/%s/%s" % (short[:2], short)] for target, short in listed]
    write_json(os.path.join(out, PACKAGE + ".json"), {"urls": urls, "version": version})
    size = sum(os.path.getsize(os.path.join(out, u[1])) for u in urls)
    return {"mpy": mpy, "version": version, "files": len(urls), "bytes": size}


def main():
    parser = argparse.ArgumentParser(description="A mip index of dynreg as .mpy (micropython-lib's layout).")
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "mip-index"))
    args = parser.parse_args()
    made = build(os.path.abspath(args.out))
    print("mip index: %s %s, %d .mpy files (mpy v%s, %d bytes) in %s" % (
        PACKAGE, made["version"], made["files"], made["mpy"], made["bytes"], os.path.relpath(args.out, os.getcwd())))
    print("serve it (for example: python3 -m http.server -d %s 8000), then on the board:"
          % os.path.relpath(args.out, os.getcwd()))
    print('  mip.install("dynreg", index="http://HOST:8000")  or  mpremote mip install --index http://HOST:8000 dynreg')


if __name__ == "__main__":
    main()
