# The host tools as a package (pyproject.toml): a wheel built from the checkout installs with
# pip into a clean virtualenv that has nothing else, not even the package's dependencies, and
# its `dynreg` command works there: --help, `check` of a good info and of a bad one, `roots`
# from the device library's files the wheel carries. The wheel holds the two packages and no
# test or build file; its version is the device library's; the emulator's pytest plugin loads
# once however a suite names it. No network: pip runs with --no-index.
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
SPEC = os.path.join(ROOT, "..", "shared", "spec", "cloud-roots")
PACKAGES = ("dynreg_tools", "cloud_emulator")
# What a fresh clone holds that the wheel must not: the checkout's other folders and files.
NOT_SHIPPED = ("host_tests", "tools", "bench", "boards", "firmware", "lib", "pico_emulator", "docs", "build")
SECRET = "Pkg2Secret-0123456789abc"


def read_by_the_tools():
    # The device library's files the tools read (its version, its built-in roots), all of them.
    return sorted(n for n in os.listdir(os.path.join(ROOT, "lib", "dynreg"))
                  if n == "__init__.py" or re.fullmatch(r"roots_\w+\.py", n))


def run(argv, cwd, **kwargs):
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)
    return proc.returncode, proc.stdout + proc.stderr


def fresh_clone_files(target):
    # The checkout as a clone has it (the symlink dynreg_tools/device_lib kept as a link), so
    # that the build writes its build/ and egg-info there, never in the checkout.
    skipped = {".git", ".venv", "build", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis"}
    shutil.copytree(ROOT, target, symlinks=True, ignore=lambda folder, names: [n for n in names if n in skipped])
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = fresh_clone_files(tmp_path_factory.mktemp("clone") / "dynreg")
    out = tmp_path_factory.mktemp("wheel")
    code, text = run([os.path.join(VENV_BIN, "pip"), "wheel", "--disable-pip-version-check", "--no-deps",
                      "--no-build-isolation", "--no-index", "-w", str(out), str(source)], cwd=out)
    assert code == 0, text
    [name] = os.listdir(out)
    yield out / name
    # The copies hold the tests' own constants, which the secrets scan after the suite would
    # otherwise find outside the stores: nothing of them is left behind.
    shutil.rmtree(source.parent, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, wheel):
    # A new virtualenv of the base interpreter (not the project's), the wheel alone in it.
    venv = tmp_path_factory.mktemp("clean") / "venv"
    code, text = run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    assert code == 0, text
    code, text = run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--no-deps", "--no-index",
                      str(wheel)], cwd=venv.parent)
    assert code == 0, text
    yield venv
    shutil.rmtree(venv.parent, ignore_errors=True)


def dynreg(clean, *argv, cwd):
    # The installed command, from a folder outside the checkout, with no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return run([str(clean / "bin" / "dynreg")] + list(argv), cwd=cwd, env=env)


def test_the_clean_virtualenv_has_the_wheel_and_none_of_its_dependencies(clean, tmp_path):
    code, text = run([str(clean / "bin" / "python"), "-c", "import dynreg_tools, cloud_emulator"], cwd=tmp_path)
    assert code == 0, text
    for module in ("mpremote", "cryptography", "amqtt", "pytest"):
        code, text = run([str(clean / "bin" / "python"), "-c", "import " + module], cwd=tmp_path)
        assert code == 1 and "ModuleNotFoundError" in text, (module, text)


def test_help_lists_every_verb_with_nothing_else_installed(clean, tmp_path):
    code, text = dynreg(clean, "--help", cwd=tmp_path)
    assert code == 0, text
    for verb in ("check", "provision", "status", "erase", "roots", "cloud"):
        assert re.search(r"^  %s +\S" % verb, text, re.M), (verb, text)
    code, text = dynreg(clean, "provision", "--help", cwd=tmp_path)
    assert code == 0 and text.startswith("usage: dynreg provision "), text


def test_check_passes_a_good_info_and_names_what_is_wrong_in_a_bad_one(clean, tmp_path):
    # A Tencent product with its own CA file (a DER certificate of the spec's) and one that relies
    # on the built-in roots: certificates read and roots consulted without cryptography.
    with open(os.path.join(SPEC, "digicert-global-root-g2.pem")) as f:
        (tmp_path / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(f.read()))
    good = {"dynreg": 1, "cloud": "tencent", "product_id": "PKGTOOLS01", "product_secret": SECRET,
            "device_name_from": "unique_id", "credential": {"psk": ""}}
    for doc in (dict(good, ca="ca.der"), good):
        (tmp_path / "product_info.json").write_text(json.dumps(doc))
        code, text = dynreg(clean, "check", "product_info.json", cwd=tmp_path)
        assert code == 0 and "ok: product_info.json" in text and "Tencent ProductId PKGTOOLS01" in text, text
        assert SECRET not in text
    (tmp_path / "product_info.json").write_text(json.dumps(dict(good, product_id="pkg-1", ca="ca.pem")))
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    code, text = dynreg(clean, "check", "product_info.json", cwd=tmp_path)
    assert code == 1 and "ok:" not in text, text
    assert "problem: field product_id is not a Tencent ProductId" in text, text
    assert "problem: the CA file ca.pem (field ca) is not a certificate" in text, text
    assert SECRET not in text


def test_roots_lists_the_device_librarys_roots_the_wheel_carries(clean, tmp_path):
    code, text = run([str(clean / "bin" / "python"), "-c", "import dynreg_tools; print(dynreg_tools.DEVICE_LIB)"],
                     cwd=tmp_path)
    carried = text.strip()
    assert code == 0 and os.path.realpath(carried).startswith(str(clean)), text  # a copy, not a link to lib/
    assert sorted(n for n in os.listdir(carried) if n.endswith(".py")) == read_by_the_tools()
    code, text = dynreg(clean, "roots", cwd=tmp_path)
    assert code == 0, text
    # Independent of our modules: the spec's GlobalSign R1, its fingerprint and expiry.
    with open(os.path.join(SPEC, "globalsign-root-r1.pem")) as f:
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest().upper()
    assert ":".join(re.findall("..", digest)) in text and "expires 2028-01-28" in text, text
    assert "CN=GlobalSign Root CA,OU=Root CA,O=GlobalSign nv-sa,C=BE" in text, text


def test_the_emulator_verb_says_which_extra_it_needs(clean, tmp_path):
    code, text = dynreg(clean, "cloud", "serve", cwd=tmp_path)
    assert code == 2 and "pip install 'dynreg-tools[cloud]'" in text and "Traceback" not in text, text


def test_the_wheel_holds_the_two_packages_and_no_test_or_build_file(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == set(PACKAGES) | {"dynreg_tools-0.1.0.dist-info"}, tops
    assert not [n for n in names if n.split("/")[0] in NOT_SHIPPED]
    assert not [n for n in names if re.search(r"(^|/)(test_[^/]*|conftest)\.py$|\.(sh|mjs|c|json|toml)$", n)], names
    packaged = sorted(n for n in names if n.startswith("dynreg_tools/device_lib/"))
    assert packaged == ["dynreg_tools/device_lib/" + n for n in read_by_the_tools()]
    entry_points = zipfile.ZipFile(wheel).read("dynreg_tools-0.1.0.dist-info/entry_points.txt").decode()
    assert "dynreg = dynreg_tools.cli:main" in entry_points
    assert "cloud_emulator.pytest_plugin = cloud_emulator.pytest_plugin" in entry_points


def test_the_package_version_is_the_device_librarys(wheel):
    with open(os.path.join(ROOT, "lib", "dynreg", "__init__.py")) as f:
        [library] = re.findall(r'^__version__ = "([^"]+)"', f.read(), re.M)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    metadata = zipfile.ZipFile(wheel).read("dynreg_tools-%s.dist-info/METADATA" % library).decode()
    assert project["version"] == library and "\nVersion: %s\n" % library in metadata


def test_the_emulator_fixture_loads_once_however_a_suite_names_it(tmp_path):
    # The package is installed in the project's venv (the bootstrap's editable install): pytest
    # loads the plugin by its entry point; a conftest's pytest_plugins and `-p` naming its module
    # too must not load it a second time (pluggy would refuse, and pytest stop).
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["cloud_emulator.pytest_plugin"]\n')
    for extra in ([], ["-p", "cloud_emulator.pytest_plugin"]):
        code, text = run([os.path.join(VENV_BIN, "python"), "-m", "pytest", "-p", "no:cacheprovider", "--fixtures"]
                         + extra, cwd=tmp_path)
        assert code == 0 and "dynreg_cloud -- " in text, text
    (tmp_path / "conftest.py").unlink()
    code, text = run([os.path.join(VENV_BIN, "python"), "-m", "pytest", "-p", "no:cacheprovider", "--fixtures"],
                     cwd=tmp_path)
    assert code == 0 and "dynreg_cloud -- " in text, text  # by the entry point alone


def test_without_the_cloud_extra_pytest_runs_and_the_fixture_says_what_to_install(tmp_path):
    # The plugin loads in every pytest of an environment that has the package: without the
    # emulator's dependencies (hidden here from the import system, as if not installed) pytest
    # must still start, and only a test that asks for the fixture errs, naming the extra.
    (tmp_path / "test_mine.py").write_text("def test_plain():\n    pass\n\n"
                                           "def test_with_the_cloud(dynreg_cloud):\n    pass\n")
    hide = ("import sys\n"
            "class Hidden:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('cryptography', 'amqtt'):\n"
            "            raise ModuleNotFoundError('No module named %r' % name, name=name)\n"
            "sys.meta_path.insert(0, Hidden())\n"
            "import pytest\n"
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'test_mine.py']))\n")
    code, text = run([os.path.join(VENV_BIN, "python"), "-c", hide], cwd=tmp_path)
    assert code == 1 and "1 passed, 1 error" in text, text  # the fixture fails at its setup
    assert "dynreg_cloud: the emulator needs cryptography, which is not installed: pip install " \
           "'dynreg-tools[cloud]'" in text, text
