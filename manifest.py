# Freezes the device library into firmware, with micropython-lib's umqtt.simple that
# dynreg.connect logs in with. Board definitions (boards/) include this file after their
# port's stock manifest; package.json installs the same files with mip. Frozen at opt=3, as
# micropython-lib freezes mip, ntptime and webrepl: no line-number tables (2.1 KB of the Pico
# W image), so a traceback from frozen dynreg names the function but says "line 1". For line
# numbers, run the same modules from source on the same firmware (README "Debugging").
metadata(
    description="Dynamic registration of MicroPython boards with Tencent, Alibaba and Azure IoT clouds",
    version="0.1.0",
)
require("umqtt.simple")
package("dynreg", base_path="lib", opt=3)
