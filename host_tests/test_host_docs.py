# The docs hold together: every relative link in the README and the docs' pages leads to a file
# of the checkout, and every #anchor to a heading of the page it names (GitHub's anchors).
import os
import re

import pytest

from e2e import ROOT

DOCS = ["README.md"] + [os.path.join(folder, name)
                        for folder in ("docs", "boards", "bench", "cloud_emulator", "pico_emulator")
                        for name in sorted(os.listdir(os.path.join(ROOT, folder))) if name.endswith(".md")]
DOCS = [doc for doc in DOCS if os.path.exists(os.path.join(ROOT, doc))]
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


def _text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _prose(text):
    # Links inside code (fenced blocks and `spans`) are not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(text):
    # GitHub's: the heading lower-cased, punctuation dropped but - and _, spaces to -, repeats -1, -2...
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else "%s-%d" % (slug, n))
    return found


def relative_links(text):
    for target in LINK.findall(_prose(text)):
        if not re.match(r"[a-z]+:", target):
            yield target


def broken_links(doc, text):
    # doc: the page's path; text: what it says.
    broken = []
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        if path and not os.path.exists(full):
            broken.append(target + " (no such file)")
        elif anchor and full.endswith(".md") and anchor not in anchors(text if full == doc else _text(full)):
            broken.append(target + " (no such heading)")
    return broken


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc):
    path = os.path.join(ROOT, doc)
    broken = broken_links(path, _text(path))
    assert not broken, "%s: %s" % (doc, "; ".join(broken))


def test_a_broken_link_is_found():
    page = os.path.join(ROOT, "docs", "page.md")
    text = ("# Page\n[ok](ERRORS.md) [gone](GONE.md) [here](#page) [nowhere](#nowhere) "
            "[ok too](../README.md#two-commands) [no heading](../README.md#no-such-heading) `[code](GONE.md)`\n")
    assert broken_links(page, text) == ["GONE.md (no such file)", "#nowhere (no such heading)",
                                        "../README.md#no-such-heading (no such heading)"]


def test_the_anchor_rule_is_githubs():
    # github-slugger's rule, as GitHub renders headings: repeats numbered, punctuation dropped.
    assert anchors("# Two commands\n## Two commands\n") == {"two-commands", "two-commands-1"}
    assert anchors("## Azure: DPS and IoT Hub\n") == {"azure-dps-and-iot-hub"}
    assert anchors("### `make check`, quickly\n") == {"make-check-quickly"}
