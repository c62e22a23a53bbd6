# Freezes the device library into firmware, with micropython-lib's umqtt.simple that
# dynreg.connect logs in with. Board definitions (boards/) include this file after their
# port's stock manifest; package.json installs the same files with mip.
metadata(
    description="Dynamic registration of MicroPython boards with Tencent and Alibaba IoT clouds",
    version="0.1.0",
)
require("umqtt.simple")
package("dynreg", base_path="lib")
