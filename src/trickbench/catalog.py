"""Where each registry lives, and a cached copy of their names and declared extras for fast start-up.

Validating params.yaml needs the registered names (and a few extras, such as which pre-processings need
the whitening matrices), but importing the registries imports torch (2-4 s), which would dominate a
no-op `snakemake` or `trickbench grid`. They are therefore cached, keyed on the size and mtime of every
source file of the package, so any edit to a registry invalidates it.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

from trickbench.registry import Registry

REGISTRY_LOCATIONS: dict[str, tuple[str, str]] = {
    "source": ("trickbench.data.sources", "SOURCES"),
    "model": ("trickbench.nn.models", "MODELS"),
    "activation": ("trickbench.nn.activations", "ACTIVATIONS"),
    "initializer": ("trickbench.nn.initializers", "INITIALIZERS"),
    "regularizer": ("trickbench.train.regularizers", "REGULARIZERS"),
    "augmentation": ("trickbench.data.augment", "AUGMENTATIONS"),
    "preprocessing": ("trickbench.data.preprocess", "PREPROCESSORS"),
    "optimizer": ("trickbench.train.optim", "OPTIMIZERS"),
    "schedule": ("trickbench.train.optim", "SCHEDULES"),
    "class_balance": ("trickbench.train.balance", "CLASS_BALANCES"),
    "finetune_mode": ("trickbench.nn.models", "FINETUNE_MODES"),
    "paper_table": ("trickbench.report.paper", "PAPER_TABLES"),
    "correction": ("trickbench.report.tables", "CORRECTIONS"),
}

# `trickbench list <kind>` accepts the plural too
KIND_ALIASES = {f"{kind}s": kind for kind in REGISTRY_LOCATIONS} | {"preprocessings": "preprocessing"}


def registry(kind: str) -> Registry:
    module_name, attribute = REGISTRY_LOCATIONS[kind]
    return getattr(importlib.import_module(module_name), attribute)


def _source_fingerprint() -> str:
    package_dir = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(package_dir)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trickbench"


def _catalog() -> dict[str, Any]:
    """{"names": kind -> names in registration order, "extras": kind -> name -> declared extras}."""
    cache_file = _cache_dir() / f"registry-catalog-{_source_fingerprint()}.json"
    try:
        return json.loads(cache_file.read_text())
    except (OSError, ValueError):
        pass
    catalog = {"names": {kind: registry(kind).names() for kind in REGISTRY_LOCATIONS},
               "extras": {kind: {entry.name: {key: entry.extra[key] for key in registry(kind).extras}
                                 for entry in registry(kind)} for kind in REGISTRY_LOCATIONS}}
    try:
        from trickbench.io import write_json

        write_json(cache_file, catalog)  # sorted keys: the names are lists, so their order stays
    except OSError:  # a read-only home must not stop validation
        pass
    return catalog


def registry_names() -> dict[str, list[str]]:
    return _catalog()["names"]


def registry_extras() -> dict[str, dict[str, dict[str, Any]]]:
    """kind -> name -> the extras its registry declares (`Registry.extras`: what code reads of every entry)."""
    return _catalog()["extras"]
