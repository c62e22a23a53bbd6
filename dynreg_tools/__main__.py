"""python -m dynreg_tools VERB [--help]: the host tools of a production line in one command.

  check      an info file and its CA, checked offline: every problem with its fix
  provision  many boards at once over mpremote: checks first, progress, a report
  status     what one board holds (files, credential), never a value
  erase      remove one board's info and sub-device store
  roots      the root CA certificates built into the firmware, per cloud and endpoint
  cloud      the local cloud emulator (serve, add-product, devices, log, ...)
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
for path in (ROOT, os.path.join(ROOT, "tools")):
    if path not in sys.path:
        sys.path.insert(0, path)


def _check(argv):
    import info_check

    return info_check.main(argv)


def _provision(argv):
    import provision

    return provision.main(argv)


def _status(argv):
    from dynreg_tools import board

    return board.main_status(argv)


def _erase(argv):
    from dynreg_tools import board

    return board.main_erase(argv)


def _roots(argv):
    from dynreg_tools import roots

    return roots.main(argv)


def _cloud(argv):
    from cloud_emulator import cli

    return cli.main(argv)


VERBS = {"check": _check, "provision": _provision, "status": _status, "erase": _erase, "roots": _roots,
         "cloud": _cloud}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if argv else 2
    verb = VERBS.get(argv[0])
    if verb is None:
        # The word typed is not repeated: it may be a secret pasted in the wrong place.
        print("dynreg_tools: unknown verb; one of: %s (--help says what each does)" % ", ".join(VERBS),
              file=sys.stderr)
        return 2
    sys.argv[0] = "python -m dynreg_tools " + argv[0]  # what the verbs' usage lines show
    return verb(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
