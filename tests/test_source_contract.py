"""The contract every data source keeps, checked on every registered source (no list of names here): its
registered name is the one it carries, its options are documented, it runs offline on the tiny input its
`example_options` writes, `load` writes nothing, the arrays are what `RawSplit` promises, and an unknown
option is refused naming the key. Then: adding a source is one new file in the package's folder, shown
with a throwaway source that the package discovers and the prepare stage runs."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_params
from trickbench.data import sources
from trickbench.data.sources import SOURCES, Source, fetch, load
from trickbench.errors import DataError

ENTRIES = list(SOURCES)


def files_below(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_a_source_carries_its_registered_name_and_documents_its_options(entry):
    cls = entry.fn
    assert issubclass(cls, Source) and not inspect.isabstract(cls)
    assert cls.name == entry.name
    assert entry.description and cls.__doc__
    for key, text in cls.OPTIONS.items():
        assert text and key in cls.__doc__, (entry.name, key)


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_a_source_fetches_and_loads_its_example_offline(entry, tmp_path):
    source = entry.fn()
    options = source.example_options(tmp_path / "input")
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    record = fetch(entry.name, options, raw_dir)
    assert record["source"] == entry.name and record["files"]
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in record["files"])

    before = files_below(tmp_path)
    data = load(entry.name, options, raw_dir, progress=False, workers=1)
    assert files_below(tmp_path) == before, "load wrote or touched a file"
    assert data.name == entry.name and len(data.class_names) >= 2
    for split in [data.train] + ([data.test] if data.test is not None else []):
        assert split.images.dtype == np.uint8 and split.images.ndim == 4 and len(split) > 0
        assert 0 <= split.labels.min() and split.labels.max() < len(data.class_names)
    side = source.image_side(sources.Options(entry.name, options, entry.fn.OPTIONS))
    if side is not None:
        assert data.train.images.shape[1:3] == (side, side)
    assert data.provenance["source"] == entry.name
    assert data.provenance["versions"]["numpy"] == np.__version__


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_a_source_refuses_an_unknown_option_by_its_key(entry, tmp_path):
    with pytest.raises(DataError, match=r"data\.options\.no_such_option: unknown option for data source"):
        load(entry.name, {"no_such_option": 1}, tmp_path, progress=False)


THROWAWAY = '''
import numpy as np

from trickbench.data.sources.base import Located, RawDataset, RawSplit, Source, register


@register("throwaway", "a test's own source: 40 random 6x6 RGB images of two classes")
class Throwaway(Source):
    """Random pixels; option `n`: how many images."""

    OPTIONS = {"n": "how many images (default 40)"}

    def locate(self, opts, raw_dir, *, fetching):
        return Located([], {"made_by": "throwaway"})

    def decode(self, located, opts, *, progress, workers):
        n = opts.integer("n", 40, 4, 1000)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
        labels = np.arange(n, dtype=np.int64) % 2
        return RawDataset(self.name, ["heads", "tails"], RawSplit(images, labels), None)

    def example_options(self, folder):
        return {}
'''


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    """A folder that is part of the sources package, holding one new file, and the registry restored after."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    # the registry catalog this process may cache must not keep the throwaway for later processes
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (folder / "throwaway.py").write_text(THROWAWAY)
    monkeypatch.setattr(sources, "__path__", [*sources.__path__, str(folder)])
    monkeypatch.setattr(SOURCES, "_entries", dict(SOURCES._entries))
    yield folder
    import sys
    sys.modules.pop("trickbench.data.sources.throwaway", None)


def test_a_new_file_in_the_package_is_a_new_source_the_prepare_stage_runs(plugin_folder, tmp_path):
    from trickbench.params import validate
    from trickbench.paths import Layout
    from trickbench.stages.data import download, prepare

    params = validate(tiny_params(paths={"artifacts": str(tmp_path / "artifacts"),
                                         "results": str(tmp_path / "results")}))
    assert "throwaway" not in SOURCES
    assert "throwaway" in sources.discover([str(plugin_folder)], sources.__name__)
    assert SOURCES.get("throwaway").name == "throwaway"

    params["data"] = {**params["data"], "source": "throwaway", "options": {"n": 60}}
    params["tracking"] = {**params["tracking"], "enabled": False}
    layout = Layout.from_params(params)
    assert download(params, layout)["made_by"] == "throwaway"
    manifest = prepare(params, layout, progress=False)
    assert manifest["source"] == "throwaway" and manifest["class_names"] == ["heads", "tails"]
    assert sum(manifest["sizes"].values()) == 60 and manifest["image_shape"] == [6, 6, 3]
    assert layout.manifest.is_file() and layout.prepared.exists()
