"""The documentation site and the README: `mkdocs build --strict` passes (a broken link or a page left out of
the navigation fails it), the README stays a front page that links into the site, and it repeats the claims'
headline as docs/findings.md (where `trickbench claims --readme docs/findings.md` writes it) has it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
# Material prints a notice about MkDocs 2 on every build; it is not a warning about this site
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(root, site):
    return subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(site)], cwd=root,
                          capture_output=True, text=True, env=QUIET, timeout=300)


def test_the_site_builds_strict_without_a_warning(tmp_path):
    done = build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = {page.stem for page in DOCS.glob("*.md")}
    assert pages == {page.stem for page in (tmp_path / "site").glob("*.html")} - {"404"}


@pytest.mark.parametrize("damage, culprit", [
    (lambda docs: (docs / "stray.md").write_text("# not in the navigation\n"), "stray.md"),
    (lambda docs: (docs / "speed.md").write_text((docs / "speed.md").read_text() + "\n[gone](gone.md)\n"),
     "gone.md"),
    (lambda docs: (docs / "speed.md").write_text((docs / "speed.md").read_text() + "\n[src](../src/x.py)\n"),
     "../src/x.py"),
    (lambda docs: (docs / "speed.md").write_text((docs / "speed.md").read_text() + "\n[a](index.md#nowhere)\n"),
     "nowhere"),
])
def test_strict_fails_on_a_page_outside_the_nav_or_a_broken_link(tmp_path, damage, culprit):
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    shutil.copytree(DOCS, tmp_path / "docs")
    damage(tmp_path / "docs")
    done = build(tmp_path, tmp_path / "site")
    assert done.returncode != 0 and culprit in done.stderr, done.stderr


def test_the_readme_fits_on_a_screen_and_links_into_the_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert text.index("make run") < text.index("make test") < text.index("\n## ")
    links = re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert {f"docs/{page.name}" for page in DOCS.glob("*.md")} - {"docs/index.md"} <= set(local)
    # results/claims.png is made by `trickbench claims`; every other link must exist
    missing = [link for link in local if not (REPO / link).exists() and link != "results/claims.png"]
    assert not missing


def test_the_readme_headline_is_the_findings_page_headline():
    """The verdict counts in the README are the ones docs/findings.md states (tests/test_claims.py checks those
    against results/claims.csv), so the front page cannot drift from the table."""
    pattern = re.compile(r"\*\*Today \(\d+ claims\):[^*]+\*\*")
    readme = pattern.findall(README.read_text())
    findings = pattern.findall((DOCS / "findings.md").read_text())
    assert len(findings) == 1 and readme == findings
