# The both-runtime test files (host_tests/test_*.py but not test_host_*.py nor the unix-port
# test_mp_*.py) on the emulated
# Pico W, against the dynreg frozen into its image, with the store on the board's own
# littlefs flash. Prints what host_tests/mp_runner.py prints on the chip: one line per failure
# and "N passed, N failed"; exits 1 on any failure.
#   .venv/bin/python pico_emulator/device_suite.py [test_file.py ...]
import os
import sys

import pico

TESTS = os.path.join(pico.ROOT, "host_tests")


def files_to_put(names):
    puts = [(os.path.join(TESTS, n), "/host_tests/" + n) for n in ("mp_runner.py", "support.py") + tuple(names)]
    for n in sorted(os.listdir(os.path.join(TESTS, "vectors"))):
        if n.endswith(".json"):
            puts.append((os.path.join(TESTS, "vectors", n), "/host_tests/vectors/" + n))
    return puts


def main(argv):
    problem = pico.check_ready()
    if problem:
        print("Pico W image: cannot run (%s)\n0 passed, 1 failed" % problem)
        return 1
    # test_mp_*.py cut power on littlefs in RAM on the unix port; the chip's own flash gets its
    # power cuts from pico_emulator/power_cuts.py instead.
    names = argv or sorted(n for n in os.listdir(TESTS) if n.startswith("test_") and n.endswith(".py")
                           and not n.startswith(("test_host_", "test_mp_")))
    # mp_runner ends with sys.exit, which the raw REPL would take for a soft reset.
    code = ("import os\nos.chdir('/')\n"
            "try:\n    exec(open('/host_tests/mp_runner.py').read(), {'__name__': '__main__', 'ARGV': %r})\n"
            "except SystemExit:\n    pass\n" % list(names))
    # The clock as a board sets it: SNTP (ntptime, frozen in the image) through the tunnel.
    clock = "import ntptime\nntptime.host = 'localhost'\nntptime.settime()\n"
    puts = [(pico.SOCKET_MODULE, "/socket.py")] + files_to_put(names)
    proc = pico.run(clock, code, puts=puts, tunnel=True, timeout=1800)
    sys.stdout.write(proc.stdout)
    for name, emulated, wall in pico.emulated_seconds(proc.stderr)[-1:]:
        print("(the suite took %.1f s emulated, %.1f s wall)" % (emulated, wall))
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr[-2000:])
        if "passed," not in proc.stdout:
            print("0 passed, 1 failed")
        return 1
    return 0 if " 0 failed" in proc.stdout else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
