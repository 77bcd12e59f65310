"""Every benchmark number the documentation quotes comes from a report in benchmarks/results/.

The rule. A *quoted number* is a number with a decimal point (0.959, 8.4, 23.7) or a
percentage (28 %) in the text of a page -- prose, lists, tables; not code -- of
README.md, docs/*.md (except the changelog, a record of what each release measured
then) and docs/guide/*.md. It states a measured score, time or rate, so it must not be
typed into the page: it is written as a lookup, the ``{result}`` or ``{result-cell}``
role or a ``result-table`` directive (``docs/result_roles.py``), which the build fills
in from the named report and which breaks the build when the report no longer holds it.
Not quoted numbers, and so typed as they are:

- a number right after ``=``, ``<``, ``>``, ``≤`` or ``≥``: a threshold, target or
  parameter value (``p < 0.05``, ``γ = 0.5``, ``≤ 0.245``);
- a version (``2.13.0``) or a citation (``arXiv:1805.12198``);
- the entries of ``SETTINGS`` below: defaults, levels, designed effect sizes and
  versions written in prose (``leaky ReLU 0.2``, ``a 90 % interval``, ``anndata 0.9``),
  each found by the words around it; an entry that no longer matches its page fails
  too, so the list cannot outlive the text it excuses.

Whole numbers (7/7 types, 1,975 cells, 30 epochs) are not checked: most are sizes and
settings, which a test cannot tell from a count that was measured; where a page quotes
a count, it names the report the count is in.

The test resolves every lookup as the build does, without Sphinx, and fails on a
quoted number written outside one.
"""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import result_tables  # noqa: E402

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                *(ROOT / "docs" / "guide").glob("*.md")])
PAGES = [p for p in PAGES if p.name != "changelog.md"]

# Settings written as numbers in prose: (page, the words around the number).
SETTINGS = {
    "docs/benchmarks.md": [
        "former 15 % limit",                    # the batch self-check's former rule
        "former 15 % MAD-change rule",
        "one-sided t at 5 %",                   # the batch rule's level
        "its reported 90 % interval",           # the interval's level
        "nominal 90 %",
        "one-sided t quantile at 10 %",         # the switch level, then and now
        "first fixed at 5 %",
        "set to 10 % per alternative",
        "with 95 % Wilson intervals",           # the intervals' level
        "plus γ·0.5 on pPlcg2",                 # the designed interaction
        "Power at γ = 0.25 / 0.5 / 1 / 2",      # the designed effect sizes
        "scvi-tools 0.19, hence anndata 0.9 and pytorch-lightning 1.7",  # versions
    ],
    "docs/guide/method.md": [
        "leaky ReLU 0.2",                       # the activation's slope
        "floored at 0.1",                       # the standardisation's floor
    ],
    "docs/guide/options.md": [
        "Above 10 % a warning",                 # outside_fraction's warning level
        "one-sided t test at 5 %",              # the batch rule's level
        "(10 % for each alternative",           # the perturbation rule's level
        "a 90 % t\nprediction interval",        # the interval's level
        "its 90 % interval",
        "old 15 % guard",                       # the former rule, named as such
        "at most 15 %",
    ],
    "docs/guide/uses.md": [
        "more than 10 % of edited activations",  # outside_fraction's warning level
    ],
}

FENCE = re.compile(r"^(```+|~~~+)[ \t]*(\{result-table\})?[ \t]*([^\n]*)\n(.*?)^\1[ \t]*$",
                   re.M | re.S)
# A backtick span: code, or with {name} before it a role.
INLINE = re.compile(r"(?:\{([\w-]+)\})?(`+)(.+?)(?<!`)\2(?!`)", re.S)
# Link targets, addresses and comments: numbers there are not quoted in the text.
NOT_TEXT = [re.compile(r"\]\([^)]*\)"), re.compile(r"https?://\S+"), re.compile(r"<!--.*?-->", re.S)]
QUOTED = re.compile(r"(?<![\w.:/])(?:\d+(?:,\d{3})*\.\d+(?:\.\d+)*|\d+(?:\.\d+)?\s?%)(?![\w.]\d)")
VERSION = re.compile(r"^\d+\.\d+\.\d+")
SIGNS = "=<>≤≥"


def _name(page):
    return page.relative_to(ROOT).as_posix()


def _blank(text, pattern):
    # Keep every offset and newline, so that a hit still has its line number.
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def split_page(text):
    """A page's lookups -- ``(kind, spec)`` for every role, ``("table", (file, rows,
    columns))`` for every result-table directive -- and its text with code, roles,
    directives, link targets and addresses blanked out."""
    found = []
    for m in FENCE.finditer(text):
        if m.group(2):
            body = m.group(4).splitlines()
            columns = [ln.split(":", 2)[2] for ln in body if ln.startswith(":columns:")]
            rows = [ln.strip() for ln in body if ln.strip() and not ln.startswith(":")]
            cols = [c.strip() for c in "".join(columns).split(";") if c.strip()]
            found.append(("table", (m.group(3).strip(), rows, cols)))
    text = _blank(text, FENCE)
    found += [(m.group(1), m.group(3)) for m in INLINE.finditer(text)
              if m.group(1) in ("result", "result-cell")]
    text = _blank(text, INLINE)
    for pattern in NOT_TEXT:
        text = _blank(text, pattern)
    return found, text


def quoted_numbers(page):
    """``(line, number, context)`` for each quoted number typed into the page's text,
    and the SETTINGS entries of the page that matched nothing."""
    text = split_page(page.read_text())[1]
    settings = SETTINGS.get(_name(page), [])
    spans, unused = [], []
    for words in settings:
        found = [m.span() for m in re.finditer(r"\s+".join(map(re.escape, words.split())), text)]
        spans += found
        if not found:
            unused.append(words)
    hits = []
    for m in QUOTED.finditer(text):
        before = text[:m.start()].rstrip().rstrip("+-−~").rstrip()
        if VERSION.match(m.group()) or (before and before[-1] in SIGNS):
            continue
        if any(a <= m.start() and m.end() <= b for a, b in spans):
            continue
        line = text.count("\n", 0, m.start()) + 1
        context = " ".join(text[max(0, m.start() - 40):m.end() + 20].split())
        hits.append((line, m.group(), context))
    return hits, unused


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_lookups_resolve(page):
    """Every lookup names a report and exactly one cell (or a text) in it."""
    failures = []
    for kind, spec in split_page(page.read_text())[0]:
        try:
            if kind == "result":
                result_tables.value(spec)
            elif kind == "result-cell":
                result_tables.full_cell(spec)
            else:
                result_tables.select(*spec)
        except result_tables.ResultError as err:
            failures.append(str(err))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_no_quoted_number_without_a_report(page):
    """No measured number is typed into a page: each is a lookup of a report."""
    hits, unused = quoted_numbers(page)
    lines = [f"{_name(page)}:{line}: {number!r} in '...{context}...'" for line, number, context in hits]
    lines += [f"{_name(page)}: SETTINGS entry {words!r} matches nothing" for words in unused]
    assert not lines, ("numbers without a report (write them as {result}`FILE > ROW > COLUMN`,"
                       " or drop them):\n" + "\n".join(lines))


def test_pages_use_lookups():
    """The pages that quote benchmarks do so through lookups (the check above would
    pass on a page that had lost them all)."""
    for name in ("docs/benchmarks.md", "docs/guide/options.md", "docs/guide/method.md"):
        assert split_page((ROOT / name).read_text())[0], name
