"""Local emulator of the IoT clouds' dynamic registration and MQTT login, for host tests.

Run `python -m cloud_emulator --help`; use `cloud_emulator.testing.running_emulator` from tests.
"""
