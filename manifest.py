# Freezes the device library into firmware. Board definitions (boards/) include this file
# after their port's stock manifest.
package("dynreg", base_path="lib")
