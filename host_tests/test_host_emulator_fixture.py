# The emulator as a pytest fixture for users' tests (docs/EMULATOR.md): the page's example run
# as written, by a pytest of its own in a folder of its own, against the frozen unix port; and
# the fixture's product of each cloud, registered and logged in by a device here.
import os
import re
import subprocess
import sys

import pytest

from e2e import MICROPYTHON, ROOT, device_env, run_device

def _example():
    with open(os.path.join(ROOT, "docs", "EMULATOR.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 1, "docs/EMULATOR.md: one python example"
    return blocks[0]


def test_the_documented_example_passes_as_written(tmp_path):
    (tmp_path / "test_my_firmware.py").write_text(_example())
    env = dict(device_env(), MICROPYTHON=os.path.abspath(MICROPYTHON), PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "cloud_emulator.pytest_plugin",
                           "-p", "no:cacheprovider", "test_my_firmware.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_the_example_fails_when_the_board_does_not_register(tmp_path):
    # The same test against a firmware that never registers: it must fail, or it proves nothing.
    (tmp_path / "test_my_firmware.py").write_text(_example().replace("dynreg.connect(dynreg.ensure(%r)).disconnect()",
                                                                     "print(%r[:0])"))
    env = dict(device_env(), MICROPYTHON=os.path.abspath(MICROPYTHON), PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "cloud_emulator.pytest_plugin",
                           "-p", "no:cacheprovider", "test_my_firmware.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout[-3000:]


@pytest.mark.parametrize("cloud", [pytest.param("aliyun", marks=pytest.mark.dynreg_cloud("aliyun")),
                                   pytest.param("azure", marks=pytest.mark.dynreg_cloud("azure")),
                                   pytest.param("tencent")])
def test_each_clouds_product_registers_and_logs_in(dynreg_cloud, cloud):
    assert dynreg_cloud.cloud == cloud
    info = dynreg_cloud.info("fixture-01")
    result = run_device(info, ensure={}, connect={})
    assert result["ok"], result
    assert len(dynreg_cloud.registrations("fixture-01")) == 1
    held = dynreg_cloud.device("fixture-01")
    assert held is not None and held["status"] in ("activated", "assigned"), held["status"]
