"""The target tables of Xu et al. 2015 (arXiv:1505.00853, Tables 3-5), as printed: single runs, no error bars.

Source: docs/reproduction.md §1 (the seed article reprints the same numbers). Each reference table has
two columns, the training metric and the held-out metric; `report.paper_table.metrics` says which of
our metrics each is compared with (CIFAR: train_error, test_error; NDSB: train_loss and a held-out
log-loss, since Kaggle never released test labels the paper's column is a validation split).
"""
from __future__ import annotations

from dataclasses import dataclass

from trickbench.registry import Registry

# our activation names (trickbench list activations) in the paper's row order
ACTIVATION_ORDER = ("relu", "leaky_relu_a100", "leaky_relu_a5.5", "prelu", "rrelu")


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    title: str
    columns: tuple[str, str]  # the paper's column names: training metric, held-out metric
    rows: dict[str, tuple[float, float]]  # activation -> (train, held-out)

    def value(self, activation: str, column: int) -> float | None:
        row = self.rows.get(activation)
        return None if row is None else row[column]


# report.paper_table.reference: name -> fn() returning the table
PAPER_TABLES = Registry("paper_table")


def _table(name: str, title: str, columns: tuple[str, str], rows: dict[str, tuple[float, float]]) -> None:
    table = ReferenceTable(name, title, columns, rows)
    PAPER_TABLES.add(name, lambda: table, title)


_table("cifar10", "Xu et al. 2015, Table 3: CIFAR-10, Network in Network, error rate", ("train error", "test error"),
       {"relu": (0.00318, 0.1245), "leaky_relu_a100": (0.0031, 0.1266), "leaky_relu_a5.5": (0.00362, 0.1120),
        "prelu": (0.00178, 0.1179), "rrelu": (0.00550, 0.1119)})
_table("cifar100", "Xu et al. 2015, Table 4: CIFAR-100, Network in Network, error rate", ("train error", "test error"),
       {"relu": (0.1356, 0.429), "leaky_relu_a100": (0.11552, 0.4205), "leaky_relu_a5.5": (0.08536, 0.4042),
        "prelu": (0.0633, 0.4163), "rrelu": (0.1141, 0.4025)})
_table("ndsb", "Xu et al. 2015, Table 5: NDSB, NDSB network, multi-class log-loss", ("train log-loss", "val log-loss"),
       {"relu": (0.8092, 0.7727), "leaky_relu_a100": (0.7846, 0.7601), "leaky_relu_a5.5": (0.7831, 0.7391),
        "prelu": (0.7187, 0.7454), "rrelu": (0.8090, 0.7292)})


def reference(name: str | None) -> ReferenceTable | None:
    """The named table (UnknownComponentError names the valid ones), None for no table."""
    return None if name is None else PAPER_TABLES.get(name)()
