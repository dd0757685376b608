"""The documents are in one piece: their links resolve and no paragraph is pasted twice.

Why: a scripted doc edit once replaced the empty string, which put a paragraph between every
character of docs/algorithm.md (292,351 lines, 25 MB) and CI stayed green.
"""
import collections
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _prose_runs(lines, length=3, min_chars=40):
    """Every run of ``length`` consecutive prose lines (not table rows) of ``min_chars`` or more."""
    for i in range(len(lines) - length + 1):
        run = tuple(lines[i:i + length])
        if all(len(line.strip()) >= min_chars and not line.lstrip().startswith("|") for line in run):
            yield i + 1, run


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_resolve(document):
    missing = [target for target in LINK.findall(document.read_text())
               if not re.match(r"[a-z]+:", target) and not (document.parent / target).exists()]
    assert not missing, f"{document.name} links to files that are not there: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_no_paragraph_appears_twice(document):
    seen = collections.defaultdict(list)
    for line_number, run in _prose_runs(document.read_text().split("\n")):
        seen[run].append(line_number)
    repeated = {run[0].strip()[:60]: where[:3] for run, where in seen.items() if len(where) > 1}
    assert not repeated, f"{document.name} repeats text (first line: line numbers): {repeated}"


def test_the_repeat_check_sees_a_pasted_paragraph():
    paragraph = ["A sentence long enough to count as prose in the document check.",
                 "Another sentence long enough to count as prose in the check too.",
                 "And a third one, so that three lines in a row are the same text."]
    lines = paragraph + ["", "| a table | row |"] + paragraph
    runs = collections.Counter(run for _, run in _prose_runs(lines))
    assert runs[tuple(paragraph)] == 2
