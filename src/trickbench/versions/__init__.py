"""Versioned results: the manifest of a results folder (`manifest`), what changed between two of them
(`diff`), and the engine commands around them (`engines`: which engine runs a stage, `lock`, `pull`).

The report stage writes `<results>/manifest.json`: digests of the params (whole and per section) and of the
prepared data, the git commit of the code, the engine that ran it, the machines of the runs, the MLflow
experiments and runs, and, under `timing`, the training time. The same code, params and machine give
the same manifest but for `timing`, the engine's name and the MLflow run ids (new work, new runs).
`trickbench diff A B` compares two results folders, or `results/` at two git commits, and says which
numbers changed, by how much, and whether params, data, code or machine changed.

The manifest cannot hold the dvc.lock hash of the stage that writes it (DVC writes the entry after the
stage ran, and the entry hashes the manifest): the lock's `outs` of the report stage name the manifest's
md5, and `trickbench lock` (after the lock is written) tags each MLflow run the manifest names with the
md5 of its stage's entry. `lock` and `pull` are the two steps of the Makefile around the engines.
"""
from __future__ import annotations

from trickbench.errors import BadInput

__all__ = ["VersionsError"]


class VersionsError(BadInput, LookupError):
    """A results folder or git revision that cannot be read: bad input (one line, exit 2)."""
