# Freezes the device library into firmware, with micropython-lib's umqtt.simple that
# dynreg.connect logs in with. Board definitions (boards/) include this file after their
# port's stock manifest; package.json installs the same files with mip. Frozen at the default
# optimisation level: -O3 would save 2.1 KB on the Pico W, but every traceback from dynreg
# would then say "line 1".
metadata(
    description="Dynamic registration of MicroPython boards with Tencent, Alibaba and Azure IoT clouds",
    version="0.1.0",
)
require("umqtt.simple")
package("dynreg", base_path="lib")
