#!/usr/bin/env python3
"""Writes lib/dynreg/roots_<cloud>.py, the clouds' root CA certificates built into the library,
from the PEM files of shared/spec/cloud-roots/ (whose README gives, for each endpoint, the roots
it chains to and the evidence). Run it when that folder changes; test_host_roots.py checks that
the modules hold exactly those certificates, bundled per endpoint as the README maps them
(the table is dynreg_tools/roots.py CLOUDS).

    .venv/bin/python tools/gen_roots.py [--roots ../shared/spec/cloud-roots]
"""
import argparse
import os
import ssl

from dynreg_tools.roots import CLOUDS  # the one table of roots and endpoints

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

def der_of(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def literal(data, width=96):
    # A bytes literal in lines of at most `width` characters: printable ASCII as is, the rest
    # as \\xNN.
    pieces = [chr(b) if 32 <= b < 127 and b not in b'"\\' else "\\x%02x" % b for b in data]
    lines, line = [], ""
    for piece in pieces:
        if len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "(\n" + "\n".join('    b"%s"' % line for line in lines) + "\n)"


def module(cloud, roots_dir):
    title, certs, bundles = CLOUDS[cloud]
    out = ["# The root CA certificates (DER) of %s's endpoints, built into the library:" % title,
           "# an info that names no `ca` (or `mqtt_ca`) trusts these. Written by tools/gen_roots.py from",
           "# shared/spec/cloud-roots/ (see its README for the evidence); do not edit by hand.", ""]
    for name, pem in certs:
        out.append("# %s (%d bytes)" % (pem, len(der_of(os.path.join(roots_dir, pem)))))
        out.append("%s = %s" % (name, literal(der_of(os.path.join(roots_dir, pem)))))
    out.append("")
    for name, members, what in bundles:
        out.append("# " + what)
        out.append("%s = (%s,)" % (name, ", ".join(members)) if len(members) == 1 else "%s = (%s)" % (name, ", ".join(members)))
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", default=os.path.join(ROOT, "..", "shared", "spec", "cloud-roots"))
    args = parser.parse_args()
    for cloud in CLOUDS:
        path = os.path.join(ROOT, "lib", "dynreg", "roots_%s.py" % cloud)
        with open(path, "w") as f:
            f.write(module(cloud, args.roots))
        print("wrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
