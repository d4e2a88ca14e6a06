"""Where each registry lives, and a cached list of their names for fast start-up.

Validating params.yaml needs the registered names, but importing the registries imports torch (2-4 s),
which would dominate a no-op `snakemake` or `trickbench grid`. The names are therefore cached, keyed
on the size and mtime of every source file of the package, so any edit to a registry invalidates it.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

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


def registry_names() -> dict[str, list[str]]:
    cache_file = _cache_dir() / f"registry-names-{_source_fingerprint()}.json"
    try:
        return json.loads(cache_file.read_text())
    except (OSError, ValueError):
        pass
    names = {kind: registry(kind).names() for kind in REGISTRY_LOCATIONS}
    try:
        from trickbench.io import write_json

        write_json(cache_file, names)
    except OSError:  # a read-only home must not stop validation
        pass
    return names
