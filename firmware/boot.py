# Runs first at every boot on ESP32 and Pico W. The safe-boot escape: with /safe_boot on
# flash, or the safe-boot button held (board.SAFE_BOOT_PIN), main.py does not start the
# application, and the REPL stays free for mpremote to mend the files. boot.py has no clean
# way to stop the port from running main.py (sys.exit() here soft-resets into boot.py again,
# in a loop): it only decides, once, and main.py asks board.safe_boot(), which remembers.
import board

if board.safe_boot():
    print("safe boot (%s): main.py will not start the application; delete /safe_boot or "
          "release the button, then reset" % board.safe_boot())
