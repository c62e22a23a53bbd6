"""dynreg VERB [--help]: the host tools of a production line in one command.

  check      an info file and its CA, checked offline: every problem with its fix
  provision  many boards at once over mpremote: checks first, progress, a report
  status     what one board holds (files, credential), never a value
  erase      remove one board's info and sub-device store
  roots      the root CA certificates built into the firmware, per cloud and endpoint
  cloud      the local cloud emulator (serve, add-product, devices, log, ...)
"""

import sys

# Each verb imports its module only when run: `dynreg --help` and `dynreg check` need nothing
# but the standard library; the board verbs run mpremote, `cloud` needs the `cloud` extra.


def _check(argv):
    from dynreg_tools import check

    return check.main(argv)


def _provision(argv):
    from dynreg_tools import provision

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
    try:
        from cloud_emulator import cli
    except ModuleNotFoundError as e:
        print("dynreg cloud: the emulator needs %s, which is not installed: pip install 'dynreg-tools[cloud]'"
              % e.name, file=sys.stderr)
        return 2
    return cli.main(argv, prog="dynreg cloud")


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
        print("dynreg: unknown verb; one of: %s (--help says what each does)" % ", ".join(VERBS), file=sys.stderr)
        return 2
    return verb(argv[1:])
