#!/usr/bin/env python3
"""Every message docs/ERRORS.md quotes must be one the devices printed during the test run.

    .venv/bin/python tools/check_errors_doc.py build/device-output.log [more transcripts ...]

tools/run_tests.sh runs it after the three runtimes, on the transcript the device tests
collect (DYNREG_TRANSCRIPT). The messages are the backticked texts of the tables' "the board
prints" columns, the ones with a space in their "what happened" / "what failed" columns (a
command excepted), and, in the prose, those that start as a console line does (`boot
attempt`, `stopped:`, `clock:`, `dynreg:`, `sub-device` ...). In a quote, `...` and
`<placeholder>` stand for any text and a lone N or M for a number. Exit 1, naming each quote
no test produced.
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOC = os.path.join(ROOT, "docs", "ERRORS.md")
MESSAGE_COLUMNS = ("the board prints",)
DETAIL_COLUMNS = ("what happened", "what failed")
CONSOLE_PREFIXES = ("boot attempt ", "stopped: ", "clock: ", "dynreg: ", "published status", "wifi: ", "network: ",
                    "safe boot", "nvs: ", "sub-device ")
COMMANDS = ("python", ".venv", "tools/", "make ", "mpremote", "dynreg ")
QUOTE = re.compile(r"`([^`]+)`")


def messages(text):
    """The quoted messages of an errors doc, in order, each once."""
    found = []
    header = None
    prose = []
    for line in text.splitlines() + [""]:
        if not line.startswith("|"):
            header = None
            if line.strip():
                prose.append(line)
                continue
            quotes = QUOTE.findall(" ".join(prose))  # a quote may run over a line break
            found += [" ".join(q.split()) for q in quotes if q.startswith(CONSOLE_PREFIXES)]
            prose = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        for name, cell in zip(header, cells):
            quotes = QUOTE.findall(cell)
            if name in MESSAGE_COLUMNS:
                found += quotes
            elif name in DETAIL_COLUMNS:
                found += [q for q in quotes if " " in q and not q.startswith(COMMANDS)]
            else:
                found += [q for q in quotes if q.startswith(CONSOLE_PREFIXES)]
    unique = []
    for q in found:
        if q not in unique:
            unique.append(q)
    return unique


def pattern(message):
    """A regular expression for a quoted message: `...` and `<placeholder>` any text on the
    line, a lone N or M a number, the rest literally."""
    parts = re.split(r"(\.\.\.|<[^<>]+>|\bN\b|\bM\b)", message)
    out = []
    for part in parts:
        if part in ("...",) or (part.startswith("<") and part.endswith(">")):
            out.append(r"[^\n]*?")
        elif part in ("N", "M"):
            out.append(r"-?\d+")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def missing(doc_text, transcript):
    """The quoted messages that the transcript holds nowhere."""
    return [m for m in messages(doc_text) if not pattern(m).search(transcript)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        print("usage: check_errors_doc.py TRANSCRIPT [TRANSCRIPT ...]", file=sys.stderr)
        return 2
    transcript = ""
    for path in argv:
        try:
            with open(path, errors="replace") as f:
                transcript += f.read().replace("\r\n", "\n")
        except OSError as e:
            print("check_errors_doc: cannot read %s (%s): run the device tests first (tools/run_tests.sh)"
                  % (path, e.strerror), file=sys.stderr)
            return 2
    with open(DOC) as f:
        doc = f.read()
    quoted = messages(doc)
    absent = missing(doc, transcript)
    for message in absent:
        print("docs/ERRORS.md quotes `%s`, which no device printed in this test run: fix the quote, or add a test "
              "that produces it" % message)
    if absent:
        print("errors doc: %d of %d quoted messages not produced by any test" % (len(absent), len(quoted)))
        return 1
    print("errors doc: all %d messages quoted in docs/ERRORS.md were printed by the devices under test" % len(quoted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
