"""Sphinx roles and a directive that write benchmark values into the pages at build time.

In a page (MyST)::

    r² DEG {result}`kang_holdout_defaults.md > neuron edit (default) > r2_deg`
    -> r² DEG 0.959 (the cell's leading number: the mean of "0.959 ± 0.001")

    {result-cell}`kang_holdout_defaults.md > neuron edit (default) > r2_deg`
    -> 0.959 ± 0.001 (the cell as the report writes it)

    {result}`throughput.md > "185.8 GFLOP/s"`
    -> 185.8 GFLOP/s (text outside the report's tables, found as written)

    ```{result-table} batch_gates.md
    :columns: method; batch EMD ↓; spread gap ↓
    uncorrected
    ComBat (all cells)
    ```
    -> those rows and columns of the report's table, one row per content line
       (no content: every row; no :columns:: every column; ``FILE # HEADING``
       for the table under a heading, as in the lookups)

The lookups are ``result_tables.py``'s. One that fails is a build warning (an error
under ``-W``), so a page never shows a number its report does not hold.
"""

import result_tables
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

logger = logging.getLogger(__name__)


class ResultRole(SphinxRole):
    def __init__(self, render):
        self.render = render

    def run(self):
        try:
            text = self.render(self.text)
            file = result_tables.parse(self.text).path
        except result_tables.ResultError as err:
            logger.warning(f"{{{self.name}}}: {err}", location=self.get_location())
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        # Rebuild the page when the report changes, as for an included file.
        self.env.note_dependency(str(file))
        return [nodes.Text(text)], []


class ResultTable(SphinxDirective):
    required_arguments = 1
    final_argument_whitespace = True  # FILE # HEADING
    has_content = True
    option_spec = {"columns": directives.unchanged}

    def run(self):
        source = self.arguments[0]
        file = source.partition("#")[0].strip()
        # ";" and not ",": headers such as "predict s, residual_bins=1" hold commas.
        columns = [c.strip() for c in self.options.get("columns", "").split(";") if c.strip()]
        rows = [line.strip() for line in self.content if line.strip()]
        try:
            table = result_tables.select(source, rows, columns)
        except result_tables.ResultError as err:
            raise self.error(f"result-table: {err}") from None
        self.env.note_dependency(str(result_tables.RESULTS / file))
        return [_table(table, f"benchmarks/results/{file}")]


def _table(table, source):
    # Labels such as edit_layer="auto" are the report's: no typographic quotes in them.
    out = nodes.table(classes=["result-table"], support_smartquotes=False)
    out += nodes.title("", "from ", nodes.literal(text=source))
    group = nodes.tgroup(cols=len(table.header))
    out += group
    group += [nodes.colspec(colwidth=1) for _ in table.header]
    group += nodes.thead("", _row(table.header))
    group += nodes.tbody("", *(_row(row) for row in table.rows))
    return out


def _row(cells):
    return nodes.row("", *(nodes.entry("", nodes.paragraph(text=c)) for c in cells))


def setup(app):
    app.add_role("result", ResultRole(result_tables.value))
    app.add_role("result-cell", ResultRole(result_tables.full_cell))
    app.add_directive("result-table", ResultTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
