"""Where every stage reads and writes: the one layout both engines and the CLI use."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_OUTPUTS = ("metrics.json", "history.csv", "batch_loss.csv", "predictions.npz", "model.pt", "diagnostics.json")


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

    # train
    def run_dir(self, study: str, point_id: str) -> Path:
        return self.artifacts / "runs" / study / point_id

    def study_runs(self, study: str) -> Path:
        return self.artifacts / "runs" / study

    def run_outputs(self, study: str, point_id: str) -> list[Path]:
        return [self.run_dir(study, point_id) / name for name in RUN_OUTPUTS]

    def checkpoint(self, study: str, point_id: str) -> Path:
        return self.run_dir(study, point_id) / "checkpoint.pt"

    # ensemble, report
    def ensemble_json(self, study: str) -> Path:
        return self.artifacts / "ensembles" / f"{study}.json"

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
