"""Every table of the report is also an HTML page holding the same values, and those pages (not the CSVs) are
what the Snakemake report shows; a real `snakemake --report` on a tiny finished run embeds them."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from conftest import BIN, REPO, report_params, tiny_params, write_params
from trickbench.paths import Layout
from trickbench.report.outputs import report_entries, report_outputs
from trickbench.stages.report import report


class TableCells(HTMLParser):
    """The header and body cells of the one <table> of a page, its caption and its footer (<p> text)."""

    def __init__(self) -> None:
        super().__init__()
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.caption = ""
        self.footer = ""
        self._cell: list[str] | None = None
        self._in_p = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p":
            self._in_p = "footer" if ("class", "footer") in attrs else "caption"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "p":
            self._in_p = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_p == "caption":
            self.caption += data
        elif self._in_p == "footer":
            self.footer += data


def html_table(path: Path) -> TableCells:
    cells = TableCells()
    cells.feed(path.read_text(encoding="utf-8"))
    cells.header, cells.rows = cells.rows[0], cells.rows[1:]
    return cells


def markdown_table(path: Path) -> tuple[str, list[str], list[list[str]], str]:
    """(caption, header, rows, the line under the table) of a write_table Markdown file."""
    caption, _, body = path.read_text(encoding="utf-8").partition("\n\n| ")
    lines = ("| " + body).strip().splitlines()
    table = [line for line in lines if line.startswith("|")]
    under = " ".join(line for line in lines if not line.startswith("|")).strip()
    split = lambda line: [cell.strip() for cell in line.strip().strip("|").split(" | ")]  # noqa: E731
    return caption, split(table[0]), [split(line) for line in table[2:]], under


def same_text(html_cell: str, markdown_cell: str) -> bool:
    """The same cell: equal text, or the same number (the page shows 6 significant digits: 0.0 as 0)."""
    try:
        return html_cell == markdown_cell or float(html_cell) == pytest.approx(float(markdown_cell), rel=1e-5)
    except ValueError:
        return False


def same_value(html_cell: str, csv_value: object) -> bool:
    if isinstance(csv_value, float) and math.isnan(csv_value):
        return html_cell in ("—", "")  # missing, or an empty text (the CSV reads both back as NaN)
    if isinstance(csv_value, (bool, str)):
        return html_cell == str(csv_value)
    return float(html_cell) == pytest.approx(float(csv_value), rel=1e-5, abs=1e-9)


def test_every_table_is_also_html_with_its_values(crafted):
    params, layout = crafted
    report(params, layout)
    declared = report_outputs(params, layout)
    pages = [path for path in declared if path.suffix == ".html"]
    stems = {path.with_suffix("") for path in declared if path.suffix == ".csv" and path.name != "curves.csv"}
    assert {path.with_suffix("") for path in pages} == stems  # one page per table (curves.csv is data for DVC)
    for page in pages:
        assert page.is_file(), page
        table = html_table(page)
        markdown = page.with_suffix(".md")
        if markdown.is_file() and markdown.name != "diagnosis.md":  # a write_table table: the same cells
            caption, header, rows, under = markdown_table(markdown)
            assert table.caption == caption, page
            assert table.footer == under.strip("_"), page  # where the runs were made, as under the Markdown
            assert table.header == header and len(table.rows) == len(rows) > 0, page
            for html_row, markdown_row in zip(table.rows, rows):
                assert all(same_text(a, b) for a, b in zip(html_row, markdown_row, strict=True)), (page, html_row)
            assert rows and any("±" in cell for row in rows for cell in row) or "±" not in markdown.read_text()
        else:  # runs and diagnosis: the CSV's columns and values
            frame = pd.read_csv(page.with_suffix(".csv"))
            assert table.header == list(frame.columns), page
            assert len(table.rows) == len(frame) > 0, page
            for html_row, (_, csv_row) in zip(table.rows, frame.iterrows()):
                wrong = [(cell, value) for cell, value in zip(html_row, csv_row, strict=True)
                         if not same_value(cell, value)]
                assert not wrong, (page, wrong)
    paper = html_table(layout.results / "acts" / "paper_table.html")
    assert [row[0] for row in paper.rows] == ["relu", "prelu", "rrelu"]
    assert "SCALED test run" in paper.caption
    assert 'charset="utf-8"' in (layout.results / "acts" / "paper_table.html").read_text()


def test_the_snakemake_report_shows_html_tables_not_csv(tmp_path):
    params = report_params({"acts": {"axes": {"activation": ["relu", "prelu"], "seed": [0, 1]}}}, tmp_path)
    layout = Layout.from_params(params)
    shown = [entry for entry in report_entries(params, layout) if entry.caption]
    tables = [entry for entry in shown if entry.path.suffix != ".png"]
    assert tables and all(entry.path.suffix == ".html" for entry in tables)
    assert {entry.path.stem for entry in tables} >= {"runs", "class_counts", "summary", "activations", "paper_table",
                                                    "diagnosis", "ensembles"}
    assert not [entry for entry in shown if entry.path.suffix == ".csv"]


def test_snakemake_report_of_a_finished_run_embeds_the_html_tables(tmp_path):
    """A real (tiny) pipeline run, then `snakemake --report report.zip`: the report holds the HTML pages."""
    shutil.copy(REPO / "Snakefile", tmp_path)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    params = tiny_params()
    params["train"].update({"epochs": 1, "width": 2, "batch_size": 256})
    params["studies"] = {"acts": {"axes": {"activation": ["relu", "rrelu"], "seed": [0]}}}
    params["tracking"]["enabled"] = False
    write_params(tmp_path / "params.yaml", params)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    run = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--quiet"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    made = subprocess.run([str(BIN / "snakemake"), "--report", "report.zip"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        pages = {Path(name).name: name for name in names if name.endswith(".html") and "/data/raw/" in name}
        assert {"runs.html", "class_counts.html", "summary.html", "paper_table.html", "activations.html",
                "diagnosis.html", "ensembles.html"} <= set(pages), sorted(names)[:40]
        assert not [name for name in names if name.endswith(".csv")]  # no table only as a download
        summary = archive.read(pages["summary.html"]).decode()
        viewer = archive.read("report/report.html").decode()
    assert summary == (tmp_path / "results" / "acts" / "summary.html").read_text()
    # the viewer opens text/html results inline (Snakemake's handleHtml), anything else only as a download
    assert viewer.count('"mime_type": "text/html"') == len(pages) == 7
