"""Values of the benchmark reports in ``benchmarks/results/``, by file, row and column.

The documentation quotes a benchmark number only through a lookup here (the roles and
the directive of ``result_roles.py`` call it at build time), so a page shows what the
report holds now, and a number whose report, row or column is gone breaks the build
instead of staying on the page. ``tests/test_doc_numbers.py`` uses the same lookups.

A lookup is written ``FILE > ROW > COLUMN``:

- ``FILE`` is a report's name in ``benchmarks/results/`` (``kang_holdout_defaults.md``);
- ``ROW`` is the row's first cell as the report writes it; where one cell does not name
  a row (per cell type and method, per seed and group), give its leading cells in
  order: ``FILE > Dendritic > neuron edit (default) > r2_deg``;
- ``COLUMN`` is the column's header as the report writes it.

Every table of the report with that column is searched, and the lookup must find
exactly one cell; where tables repeat their rows and columns under different headings,
``FILE # HEADING`` searches only the tables under the heading that starts so
(``synergy_populations.md # Power, design a > 1 > within, mean``).

``FILE > "TEXT"`` quotes text outside the tables (a report's header or check lines): the
text must occur in the report as written, not inside a longer number. Braces mark the
part a page shows, the rest says which number it is: ``FILE > "covers the real held-out
skill of the chosen candidate in {12/14} groups"`` shows ``12/14``.

No module of Sphinx is imported here, so the test runs without the docs extra.
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
SEPARATOR = " > "
# A number as the reports write them: 0.957, -0.000, 2,457.8, 4/100 (the 4), 1e-05.
NUMBER = re.compile(r"[-+−]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")


class ResultError(LookupError):
    """A lookup that names no report, no cell, or more than one cell."""


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    heading: str = ""


@dataclass(frozen=True)
class Lookup:
    """One parsed ``FILE > ROW... > COLUMN`` or ``FILE > "TEXT"``."""

    file: str
    row: tuple[str, ...] = ()
    column: str = ""
    text: str = ""
    section: str = ""

    @property
    def path(self) -> Path:
        return RESULTS / self.file


def parse(spec: str) -> Lookup:
    parts = [p.strip() for p in spec.split(SEPARATOR)]
    file, _, section = (p.strip() for p in parts[0].partition("#"))
    if len(parts) == 2 and len(parts[1]) > 1 and parts[1][0] == parts[1][-1] == '"':
        return Lookup(file, text=parts[1][1:-1], section=section)
    if len(parts) < 3 or not all(parts):
        raise ResultError(f"{spec!r}: write FILE > ROW > COLUMN or FILE > \"TEXT\"")
    return Lookup(file, row=tuple(parts[1:-1]), column=parts[-1], section=section)


@functools.cache
def read(file: str) -> str:
    path = RESULTS / file
    # A name like "../x" would read outside the reports; only plain names are lookups.
    if path.parent != RESULTS or not path.is_file():
        raise ResultError(f"no report {file!r} in benchmarks/results/")
    return path.read_text()


@functools.cache
def tables(file: str, section: str = "") -> tuple[Table, ...]:
    """The pipe tables of a report, in order; with ``section``, those under a heading
    that starts with it."""
    found, block, heading = [], [], ""
    for line in read(file).splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        # A table is a header, a |---| line and its rows; other runs of "|" lines are not.
        if len(block) >= 2 and set(block[1]) <= set("|-: "):
            cells = [_cells(row) for row in block]
            found.append(Table(cells[0], tuple(cells[2:]), heading))
        block = []
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    found = [t for t in found if t.heading.startswith(section)]
    if not found:
        raise ResultError(f"{file}: no table" + (f" under a heading {section!r}..." if section else ""))
    return tuple(found)


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def cell(lookup: Lookup) -> str:
    """The one cell a ``FILE > ROW > COLUMN`` lookup names, as the report writes it."""
    hits = []
    for table in tables(lookup.file, lookup.section):
        if lookup.column not in table.header:
            continue
        col = table.header.index(lookup.column)
        n = len(lookup.row)
        hits += [row[col] for row in table.rows if row[:n] == lookup.row and col < len(row)]
    if len(hits) != 1:
        where = lookup.file + (f" # {lookup.section}" if lookup.section else "")
        raise ResultError(f"{where}: row {' > '.join(lookup.row)!r}, column {lookup.column!r}: "
                          f"{len(hits)} cells match"
                          + ("" if hits else f" (columns: {_columns(lookup.file)})"))
    return hits[0]


def _columns(file: str) -> str:
    return "; ".join(dict.fromkeys(h for t in tables(file) for h in t.header))


def quote(lookup: Lookup) -> str:
    """What a ``FILE > "TEXT"`` lookup shows (the braced part, else all of it), once the
    text is found in the report."""
    text = lookup.text.replace("{", "").replace("}", "")
    shown = re.findall(r"\{([^{}]*)\}", lookup.text)
    if len(shown) > 1 or not text.strip():
        raise ResultError(f"{lookup.file}: {lookup.text!r}: one braced part at most, and some text")
    # Not inside a longer number: "0.06" must not pass because the report says "0.064".
    edge = r"(?<![\d.])" if text[:1].isdigit() else ""
    tail = r"(?![\d])" if text[-1:].isdigit() else ""
    if not re.search(edge + re.escape(text) + tail, read(lookup.file)):
        raise ResultError(f"{lookup.file}: text {text!r} not found")
    return shown[0] if shown else text


def value(spec: str) -> str:
    """What a page shows for ``spec``: a quoted text, or the leading number of the cell
    (the mean of ``mean ± sd``)."""
    lookup = parse(spec)
    if lookup.text:
        return quote(lookup)
    text = cell(lookup)
    match = NUMBER.match(text)
    if not match:
        raise ResultError(f"{spec!r}: cell {text!r} does not start with a number")
    return match.group().replace("−", "-")


def full_cell(spec: str) -> str:
    """The whole cell ``spec`` names (``0.957 ± 0.001``, ``4/100 = 0.040 [0.016, 0.098]``)."""
    lookup = parse(spec)
    if lookup.text:
        raise ResultError(f"{spec!r}: a cell lookup is FILE > ROW > COLUMN")
    return cell(lookup)


def select(source: str, rows: list[str], columns: list[str]) -> Table:
    """Rows (leading cells joined by `` > ``) and columns of the one table of ``source``
    (``FILE`` or ``FILE # HEADING``) that has them all; no rows or no columns means all
    of them."""
    file, _, section = (p.strip() for p in source.partition("#"))
    keys = [tuple(r.strip() for r in row.split(SEPARATOR)) for row in rows]
    matches = []
    for table in tables(file, section):
        if not set(columns) <= set(table.header):
            continue
        found = [[r for r in table.rows if r[:len(k)] == k] for k in keys]
        if all(found):
            # A key that names several rows (one per seed, say) is no row of the page.
            matches.append((table, [r[0] if len(r) == 1 else None for r in found]
                            if keys else list(table.rows)))
    if len(matches) != 1 or not all(matches[0][1]):
        raise ResultError(f"{source}: no one table has columns {columns} and exactly one row per"
                          f" key {rows} (columns: {_columns(file)})")
    table, picked = matches[0]
    idx = [table.header.index(c) for c in columns] if columns else range(len(table.header))
    return Table(tuple(table.header[i] for i in idx),
                 tuple(tuple(row[i] if i < len(row) else "" for i in idx) for row in picked),
                 table.heading)
