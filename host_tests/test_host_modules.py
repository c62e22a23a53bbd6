# A board that uses one cloud loads only that cloud's modules: after a first boot (register,
# store, connect, publish) on the frozen unix build, the dynreg modules in sys.modules are the
# shared ones and that cloud's, never another cloud's (nor the error hints, which only a
# refusal imports), nor any built-in roots when the info names its CA.
import base64
import hashlib

import pytest

from cloud_emulator.testing import running_emulator
from e2e import SECRET, run_device, write_aliyun_info, write_azure_info, write_info

SHARED = {"dynreg", "dynreg.clock", "dynreg.codec", "dynreg.flow", "dynreg.hmac", "dynreg.mqtt", "dynreg.net",
          "dynreg.store"}
OWN = {"tencent": {"dynreg.tencent"}, "aliyun": {"dynreg.aliyun"}, "azure": {"dynreg.azure"}}
HTTP = {"tencent", "aliyun"}  # dynreg.http: the HTTP(S) registrations of both, imported when used
KEY = base64.b64encode(hashlib.sha256(b"modules test group").digest()).decode()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("cloud")) as cloud:
        cloud.add_product("MODULES001", SECRET, auth="key", dynreg=True, mode="autocreate")
        cloud.add_product("a1ModulesPk", SECRET, cloud="aliyun")
        cloud.add_device("a1ModulesPk", "modules-mqtt")
        cloud.add_product("modules", KEY, cloud="azure", id_scope="0ne00MODULE", hub="m.azure-devices.net",
                          assign_seconds=0)
        yield cloud


@pytest.mark.parametrize("which", ["tencent", "aliyun", "azure"])
def test_only_the_clouds_own_modules_are_loaded(cloud, tmp_path, which):
    if which == "tencent":
        info = write_info(tmp_path, cloud, "MODULES001", "modules-https")
    elif which == "aliyun":
        info = write_aliyun_info(tmp_path, cloud, "a1ModulesPk", "modules-mqtt", api="mqtt")
    else:
        info = write_azure_info(tmp_path, cloud, "0ne00MODULE", "modules-dps", KEY)
    result = run_device(info, ensure={}, connect={}, modules=True)
    assert result["ok"] and result["connected"], result
    loaded = set(result["modules"])
    allowed = SHARED | OWN[which] | ({"dynreg.http"} if which in HTTP else set())
    assert allowed >= loaded >= OWN[which], sorted(loaded)
    others = set().union(*(OWN[c] for c in OWN if c != which)) - OWN[which]
    assert not loaded & others and "dynreg.hints" not in loaded
    # The info names the emulator's CA: no built-in roots are loaded, not even its cloud's.
    assert not [m for m in loaded if m.startswith("dynreg.roots_")], sorted(loaded)
