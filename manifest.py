# Freezes the device library into firmware, with micropython-lib's umqtt.simple that
# dynreg.connect logs in with. Board definitions (boards/) include this file after their
# port's stock manifest; package.json installs the same files with mip. Frozen at opt=3, as
# micropython-lib freezes mip, ntptime and webrepl: no line-number tables (2.1 KB of the Pico
# W image), so a traceback from frozen dynreg names the function but says "line 1". For line
# numbers, run the same modules from source on the same firmware (docs/BOARDS.md "Debugging").
#
# Option `clouds`: the clouds the image serves, comma-separated (default: all). A board that
# serves one product freezes only its cloud's code and root certificates, for example
#   include("$(BOARD_DIR)/../../manifest.py", is_require=True, clouds="tencent")
# An info of a cloud the image leaves out is refused with a ConfigError that names it.
options.defaults(clouds="tencent,aliyun,azure,aws")

metadata(
    description="Dynamic registration of MicroPython boards with Tencent, Alibaba, Azure and AWS IoT clouds",
    version="0.1.0",
)
require("umqtt.simple")

_CLOUDS = {"tencent": ["tencent", "roots_tencent", "http"], "aliyun": ["aliyun", "roots_aliyun", "http", "gateway"],
           "azure": ["azure", "roots_azure"], "aws": ["aws", "roots_aws"]}
_files = ["__init__", "clock", "codec", "flow", "hints", "hmac", "mqtt", "net", "online", "store"]
for _cloud in options.clouds.split(","):
    if _cloud.strip() not in _CLOUDS:
        raise ValueError("clouds: unknown cloud %r (known: %s)" % (_cloud, ", ".join(_CLOUDS)))
    _files += [f for f in _CLOUDS[_cloud.strip()] if f not in _files]
package("dynreg", files=[f + ".py" for f in _files], base_path="lib", opt=3)
