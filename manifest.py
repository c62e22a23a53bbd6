# Freezes the device library into firmware, with micropython-lib's umqtt.simple that
# dynreg.connect logs in with. Board definitions (boards/) include this file after their
# port's stock manifest; package.json installs the same files with mip. dynreg is frozen at
# optimisation level 3: no line numbers in its tracebacks, 2.1 KB less flash on the Pico W (the
# library raises its own typed errors, whose messages say what happened; it has no asserts).
# umqtt.simple keeps its level: its asserts check the broker's packets.
metadata(
    description="Dynamic registration of MicroPython boards with Tencent, Alibaba and Azure IoT clouds",
    version="0.1.0",
)
require("umqtt.simple")
package("dynreg", base_path="lib", opt=3)
