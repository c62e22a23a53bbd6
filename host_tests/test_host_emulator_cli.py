"""The emulator's command line (cloud_emulator/cli.py): add-product's --update rule, the
--state default and its refusal of folders without emulator state, and ProductSecrets that
never reach argv, the terminal or an error message. Run as a subprocess, as a user runs it."""

import json
import secrets
import shutil
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_emulator.testing import running_emulator

ROOT = Path(__file__).resolve().parent.parent

ALPHANUMERICS = string.ascii_letters + string.digits
TENCENT_PID = "CLITEST001"
ALIYUN_PK = "a1CliTest01"


def run_cli(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloud_emulator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30, input=stdin)


class _Secret(str):
    # pytest prints a failing test's fixture values and compared operands by their repr.
    def __repr__(self) -> str:
        return "'<secret of %d characters>'" % len(self)


def new_secret() -> str:
    return _Secret("".join(secrets.choice(ALPHANUMERICS) for _ in range(24)))


def secret_file(folder: Path, secret: str, name: str = "secret.txt") -> str:
    path = folder / name
    path.write_text(secret + "\n")
    return str(path)


def stored_products(state: Path) -> dict:
    return json.loads((state / "state.json").read_text())["products"]


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture
def state(tmp_path):
    """A state folder holding one Tencent product made from a secret file: (folder, secret)."""
    folder, secret = tmp_path / "cloud", new_secret()
    made = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID,
                   "--secret-file", secret_file(tmp_path, secret, "secret-first.txt"), "--mode", "precreate",
                   "--limit", "3", "--dynreg", "off")
    assert made.returncode == 0, output(made)
    return folder, secret


# -- add-product on an existing id ----------------------------------------------------------------


def test_add_product_refuses_an_existing_id_without_update(state, tmp_path):
    folder, secret = state
    again = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID,
                    "--secret-file", secret_file(tmp_path, new_secret(), "secret-other.txt"))
    assert again.returncode == 2
    [line] = again.stderr.splitlines()
    assert TENCENT_PID in line and "--update" in line and again.stdout == ""
    product = stored_products(folder)[TENCENT_PID]
    assert (product["secret"], product["mode"], product["limit"]) == (secret, "precreate", 3)
    assert product["dynreg"] is False


def test_update_changes_only_the_options_given(state):
    folder, secret = state
    updated = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID, "--update", "--limit", "7")
    assert updated.returncode == 0, output(updated)
    assert "updated (changed: limit)" in updated.stdout and "limit 7" in updated.stdout
    product = stored_products(folder)[TENCENT_PID]
    assert (product["secret"], product["mode"], product["limit"]) == (secret, "precreate", 7)
    assert product["dynreg"] is False


def test_update_with_nothing_new_says_nothing_changed(state):
    folder, _ = state
    updated = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID, "--update",
                      "--mode", "precreate")
    assert updated.returncode == 0 and "nothing changed" in updated.stdout


def test_update_replaces_the_secret_only_when_one_is_given_and_never_shows_it(state, tmp_path):
    folder, _ = state
    rotated = new_secret()
    updated = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID, "--update",
                      "--secret-file", secret_file(tmp_path, rotated, "secret-rotated.txt"))
    assert updated.returncode == 0 and "changed: secret" in updated.stdout and rotated not in output(updated)
    product = stored_products(folder)[TENCENT_PID]
    assert (product["secret"], product["limit"]) == (rotated, 3)


def test_update_keeps_the_aliyun_settings_not_given(tmp_path):
    folder = str(tmp_path / "cloud")
    made = run_cli("add-product", "--state", folder, "--cloud", "aliyun", "--product-key", ALIYUN_PK,
                   "--secret-file", secret_file(tmp_path, new_secret()), "--gateway", "--regnwl", "on")
    assert made.returncode == 0, output(made)
    updated = run_cli("add-product", "--state", folder, "--product-key", ALIYUN_PK, "--update", "--securemode3", "on")
    assert updated.returncode == 0, output(updated)
    assert "changed: securemode3" in updated.stdout and "node gateway" in updated.stdout
    product = stored_products(Path(folder))[ALIYUN_PK]
    assert (product["gateway"], product["regnwl"], product["securemode3"]) == (True, True, True)
    direct = run_cli("add-product", "--state", folder, "--product-key", ALIYUN_PK, "--update", "--direct")
    assert direct.returncode == 0 and "changed: node" in direct.stdout
    assert stored_products(Path(folder))[ALIYUN_PK]["gateway"] is False


# -- the state folder ------------------------------------------------------------------------------

OPERATOR_COMMANDS = [
    ["add-device", "--product-id", TENCENT_PID, "--device-name", "dev-1"],
    ["reset-device", "--product-id", TENCENT_PID, "--device-name", "dev-1"],
    ["devices"], ["products"], ["log"], ["fault", "--list"], ["clock", "--offset", "5"],
    ["drop", "--product-id", TENCENT_PID, "--device-name", "dev-1"],
]


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=lambda command: command[0])
def test_commands_refuse_a_state_folder_that_does_not_exist(tmp_path, command):
    missing = tmp_path / "clod"
    refused = run_cli(command[0], "--state", str(missing), *command[1:])
    assert refused.returncode == 2
    assert f"no emulator state at {missing}" in refused.stderr and f"serve --state {missing}" in refused.stderr
    assert not missing.exists()


def test_commands_refuse_a_folder_without_emulator_state(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = run_cli("devices", "--state", str(empty))
    assert refused.returncode == 2 and "no emulator state" in refused.stderr
    assert list(empty.iterdir()) == []


def test_commands_accept_a_state_that_serve_made(tmp_path):
    with running_emulator(tmp_path / "cloud") as cloud:
        listed = run_cli("devices", "--state", str(cloud.state_dir))
    assert listed.returncode == 0, output(listed)


def test_add_product_starts_a_state_in_a_folder_named_explicitly(tmp_path):
    folder = tmp_path / "new"
    made = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID,
                   "--secret-file", secret_file(tmp_path, new_secret()))
    assert made.returncode == 0 and "new one" in made.stderr
    assert run_cli("products", "--state", str(folder)).returncode == 0


def test_state_defaults_to_build_cloud_beside_the_package(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "cloud_emulator", checkout / "cloud_emulator",
                    ignore=shutil.ignore_patterns("__pycache__", "testing.py"))  # its example secrets: not needed
    default = checkout / "build" / "cloud"
    refused = run_cli("products", cwd=checkout)
    assert refused.returncode == 2 and f"no emulator state at {default}" in refused.stderr
    no_create = run_cli("add-product", "--product-id", TENCENT_PID, "--secret-file",
                        secret_file(tmp_path, new_secret()), cwd=checkout)
    assert no_create.returncode == 2 and not default.exists()
    assert run_cli("add-product", "--state", str(default), "--product-id", TENCENT_PID,
                   "--secret-file", secret_file(tmp_path, new_secret()), cwd=checkout).returncode == 0
    assert run_cli("add-device", "--product-id", TENCENT_PID, "--device-name", "dev-1", cwd=checkout).returncode == 0
    listed = run_cli("devices", cwd=checkout)
    assert listed.returncode == 0 and "dev-1" in listed.stdout


# -- ProductSecrets off argv -----------------------------------------------------------------------


def test_secret_file_drops_one_trailing_newline(tmp_path):
    secret = new_secret()
    path = tmp_path / "secret.txt"
    path.write_text(secret + "\n")
    made = run_cli("add-product", "--state", str(tmp_path / "cloud"), "--product-id", TENCENT_PID,
                   "--secret-file", str(path))
    assert made.returncode == 0 and secret not in output(made)
    assert stored_products(tmp_path / "cloud")[TENCENT_PID]["secret"] == secret


def test_secret_file_dash_reads_stdin(tmp_path):
    secret = new_secret()
    made = run_cli("add-product", "--state", str(tmp_path / "cloud"), "--product-id", TENCENT_PID,
                   "--secret-file", "-", stdin=secret + "\n")
    assert made.returncode == 0 and secret not in output(made)
    assert stored_products(tmp_path / "cloud")[TENCENT_PID]["secret"] == secret


@pytest.mark.parametrize("text", ["", "\n"], ids=["empty", "newline"])
def test_secret_file_refuses_an_empty_secret(tmp_path, text):
    path = tmp_path / "secret.txt"
    path.write_text(text)
    refused = run_cli("add-product", "--state", str(tmp_path / "cloud"), "--product-id", TENCENT_PID,
                      "--secret-file", str(path))
    assert refused.returncode == 2 and "empty" in refused.stderr
    assert not (tmp_path / "cloud" / "state.json").exists()


def test_generate_secret_writes_a_private_file_and_prints_only_its_path(tmp_path):
    path = tmp_path / "secret.txt"
    made = run_cli("add-product", "--state", str(tmp_path / "cloud"), "--product-id", TENCENT_PID,
                   "--generate-secret", str(path))
    assert made.returncode == 0, output(made)
    secret = path.read_text()
    assert secret.endswith("\n") and len(secret[:-1]) == 24 and all(c in ALPHANUMERICS for c in secret[:-1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in made.stdout and secret[:-1] not in output(made)
    assert stored_products(tmp_path / "cloud")[TENCENT_PID]["secret"] == secret[:-1]


def test_generate_secret_never_overwrites_a_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("keep me\n")
    refused = run_cli("add-product", "--state", str(tmp_path / "cloud"), "--product-id", TENCENT_PID,
                      "--generate-secret", str(path))
    assert refused.returncode == 2 and "exists" in refused.stderr
    assert path.read_text() == "keep me\n"
    assert not (tmp_path / "cloud" / "state.json").exists()


def test_generate_secret_leaves_no_file_when_the_product_is_refused(state, tmp_path):
    folder, secret = state
    path = tmp_path / "unused.txt"
    refused = run_cli("add-product", "--state", str(folder), "--product-id", TENCENT_PID,
                      "--generate-secret", str(path))
    assert refused.returncode == 2 and not path.exists()
    assert stored_products(folder)[TENCENT_PID]["secret"] == secret


def test_secret_on_argv_still_works_with_a_warning(tmp_path):
    secret = new_secret()
    made = run_cli("add-product", "--state", str(tmp_path / "cloud"), "--product-id", TENCENT_PID,
                   "--secret", secret)
    assert made.returncode == 0 and secret not in output(made)
    assert "warning" in made.stderr and "shell history" in made.stderr
    assert stored_products(tmp_path / "cloud")[TENCENT_PID]["secret"] == secret


# Each mistake is otherwise a complete add-product: argparse reports the mistake itself, not a
# missing option. A secret on argv stands for a file the user meant to name.
ADD_PRODUCT = ["add-product", "--product-id", TENCENT_PID, "--secret", "placeholder-secret-0001"]


@pytest.mark.parametrize("mistake", [
    [*ADD_PRODUCT, "--secrett", "{secret}"],
    [*ADD_PRODUCT, "--secrett={secret}"],
    [*ADD_PRODUCT, "--secre={secret}"],  # ambiguous: --secret or --secret-file
    ["--secret", "{secret}", *ADD_PRODUCT],  # before the command
    [*ADD_PRODUCT, "--update={secret}"],
], ids=["unknown-option", "unknown-option-equals", "ambiguous", "before-command", "flag-with-value"])
def test_argument_errors_never_echo_a_secret(tmp_path, mistake):
    secret = new_secret()
    refused = run_cli(*(part.format(secret=secret) for part in mistake), "--state", str(tmp_path / "cloud"))
    assert refused.returncode == 2 and "error:" in refused.stderr
    assert secret not in output(refused)


def test_unrecognized_arguments_still_name_the_option(tmp_path):
    refused = run_cli(*ADD_PRODUCT, "--state", str(tmp_path), "--secrett", new_secret())
    assert refused.returncode == 2 and "unrecognized arguments: --secrett <hidden>" in refused.stderr


# -- throttle ------------------------------------------------------------------------------------

def test_throttle_sets_and_lifts_a_products_registration_rate(state):
    folder, _ = state
    made = run_cli("throttle", "--state", str(folder), "--product-id", TENCENT_PID, "--rate", "2.5", "--burst", "4")
    assert made.returncode == 0 and "at most 2.5 registrations a second, 4 at once" in made.stdout, output(made)
    throttles = json.loads((folder / "state.json").read_text())["throttles"]
    assert throttles == {TENCENT_PID: {"rate": 2.5, "burst": 4, "retry_after": "slot", "answer": "cloud"}}
    made = run_cli("throttle", "--state", str(folder), "--product-id", TENCENT_PID, "--rate", "1", "--answer", "http",
                   "--retry-after", "next")
    assert made.returncode == 0 and "answer: http, Retry-After: next" in made.stdout, output(made)
    throttles = json.loads((folder / "state.json").read_text())["throttles"]
    assert throttles[TENCENT_PID] == {"rate": 1.0, "burst": 1, "retry_after": "next", "answer": "http"}
    # As before there was an --answer: a Retry-After mode asks for the 429 that carries it.
    made = run_cli("throttle", "--state", str(folder), "--product-id", TENCENT_PID, "--rate", "1", "--retry-after",
                   "none")
    assert made.returncode == 0 and "answer: http, Retry-After: none" in made.stdout, output(made)
    lifted = run_cli("throttle", "--state", str(folder), "--product-id", TENCENT_PID, "--off")
    assert lifted.returncode == 0 and json.loads((folder / "state.json").read_text())["throttles"] == {}


@pytest.mark.parametrize("args", [["--product-id", "NOSUCHPROD"], ["--product-id", TENCENT_PID, "--rate", "0"],
                                  ["--product-id", TENCENT_PID], ["--product-id", TENCENT_PID, "--rate", "1",
                                                                  "--burst", "0"]],
                         ids=["unknown-product", "zero-rate", "neither-rate-nor-off", "zero-burst"])
def test_throttle_refuses_what_makes_no_sense(state, args):
    folder, _ = state
    if args == ["--product-id", "NOSUCHPROD"]:
        args = args + ["--rate", "1"]
    refused = run_cli("throttle", "--state", str(folder), *args)
    assert refused.returncode == 2, output(refused)
    assert "throttles" not in json.loads((folder / "state.json").read_text())
