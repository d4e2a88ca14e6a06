"""Where every stage reads and writes: the one layout the Snakemake rules, the CLI and the stages use.

dvc.yaml cannot import it and spells the same paths with ${paths.*}: tests/test_layout.py checks that
DVC resolves every stage's paths to what Layout gives, and that Snakemake plans the files Layout names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunFiles:
    """The files of one training run (one grid point of one study), all in its own folder."""

    folder: Path

    @property
    def metrics(self) -> Path:
        """Written last: its presence marks a complete, logged run."""
        return self.folder / "metrics.json"

    @property
    def history(self) -> Path:
        return self.folder / "history.csv"

    @property
    def batch_loss(self) -> Path:
        return self.folder / "batch_loss.csv"

    @property
    def predictions(self) -> Path:
        return self.folder / "predictions.npz"

    @property
    def model(self) -> Path:
        return self.folder / "model.pt"

    @property
    def diagnostics(self) -> Path:
        return self.folder / "diagnostics.json"

    @property
    def checkpoint(self) -> Path:
        """Only while the run trains: deleted once it completes, so never an output."""
        return self.folder / "checkpoint.pt"

    @property
    def outputs(self) -> dict[str, Path]:
        """Every file a finished run leaves, by name: the train rule's (named) outputs."""
        return {"metrics": self.metrics, "history": self.history, "batch_loss": self.batch_loss,
                "predictions": self.predictions, "model": self.model, "diagnostics": self.diagnostics}


@dataclass(frozen=True)
class Layout:
    artifacts: Path
    results: Path
    figure_format: str = "png"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Layout":
        return cls(Path(params["paths"]["artifacts"]), Path(params["paths"]["results"]),
                   params["report"]["figure_format"])

    # download, prepare, stats, tracking
    @property
    def raw_dir(self) -> Path:
        return self.artifacts / "raw"

    @property
    def download_record(self) -> Path:
        return self.raw_dir / "download.json"

    @property
    def prepared(self) -> Path:
        return self.artifacts / "data" / "prepared.npz"

    @property
    def manifest(self) -> Path:
        return self.artifacts / "data" / "manifest.json"

    @property
    def stats_json(self) -> Path:
        return self.artifacts / "data" / "stats.json"

    @property
    def stats_arrays(self) -> Path:
        return self.artifacts / "data" / "stats.npz"

    @property
    def spectrum_figure(self) -> Path:
        return self.results / "data" / f"pca_spectrum.{self.figure_format}"

    @property
    def tracking_record(self) -> Path:
        return self.artifacts / "tracking.json"

    # train: DVC's train stage of a study outputs its whole folder, Snakemake's train job the files of one run
    @property
    def runs_dir(self) -> Path:
        return self.artifacts / "runs"

    def study_runs(self, study: str) -> Path:
        return self.runs_dir / study

    def run_dir(self, study: str, point_id: str) -> Path:
        return self.study_runs(study) / point_id

    def run_files(self, study: str, point_id: str) -> RunFiles:
        return RunFiles(self.run_dir(study, point_id))

    def checkpoint(self, study: str, point_id: str) -> Path:
        return self.run_files(study, point_id).checkpoint

    # ensemble, report
    @property
    def ensembles_dir(self) -> Path:
        return self.artifacts / "ensembles"

    def ensemble_json(self, study: str) -> Path:
        return self.ensembles_dir / f"{study}.json"

    def study_results(self, study: str) -> Path:
        return self.results / study

    @property
    def report_record(self) -> Path:
        """Written by the report stage last, under artifacts (never committed): `rule all` asks for it, so a
        fresh clone runs the pipeline although results/ is committed."""
        return self.artifacts / "report.json"

    @property
    def runs_table(self) -> Path:
        return self.results / "runs.csv"

    @property
    def curves_table(self) -> Path:
        """Every run's per-epoch curves in long format (one row per run and epoch): DVC's plots read it."""
        return self.results / "curves.csv"

    @property
    def class_counts_table(self) -> Path:
        return self.results / "data" / "class_counts.csv"

    def study_table(self, study: str, name: str, ext: str = "csv") -> Path:
        """A study's table of the report (summary, diagnosis, ensembles, ...) in one format."""
        return self.study_results(study) / f"{name}.{ext}"

    def claims_file(self, ext: str) -> Path:
        """The verdicts on a preset's claims (claims.md/.csv/.html) and their forest plot (claims.png)."""
        return self.results / f"claims.{ext}"

    # Snakemake's job logs (DVC prints to the terminal)
    def log(self, *names: str) -> Path:
        """logs/<rule>.log, or logs/<rule>/<study>/<point>.log for a job per study or point; a name is kept
        whole (a point id may hold dots)."""
        *folders, name = names
        return self.artifacts.joinpath("logs", *folders, f"{name}.log")
