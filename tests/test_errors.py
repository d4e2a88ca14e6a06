"""Bad input against bugs: the CLI turns exactly `trickbench.errors.BadInput` into exit 2 and one line;
any other exception is a bug and keeps its traceback (exit 1). The readers of stage files raise the bad
input themselves, naming the file, so the CLI never has to guess it.

The CLI cases run the real `main` in a subprocess (the interpreter's exit code and stderr are the
contract); the bug is a stage replaced, in that process only, by one that fails the way a bug does.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import tiny_params, write_params
from trickbench.data.prepared import Prepared, load_prepared, save_prepared
from trickbench.data.stats import ARRAY_KEYS, load_stats
from trickbench.errors import BadInput, DataError, MissingInputError, UnreadableFileError
from trickbench.io import read_json

STAGE_FAILING_WITH = """
import sys
import trickbench.stages.data as stages
from trickbench.errors import DataError

def stats(params, layout):
    {body}

stages.stats = stats
from trickbench.cli import main
sys.exit(main(["stats"]))
"""

BUGS = {
    "key-error": ('return {"eigenvalues": []}["channel_mean"]', "KeyError: 'channel_mean'"),
    "index-error": ("return [][0]", "IndexError: list index out of range"),
    "file-not-found": ('return open("/nonexistent/made-up-by-the-code.json")', "FileNotFoundError"),
    "lookup-error": ('raise LookupError("no such entry")', "LookupError: no such entry"),
}


def run_stats_stage(tmp_path, body: str) -> subprocess.CompletedProcess:
    write_params(tmp_path / "params.yaml", tiny_params())
    return subprocess.run([sys.executable, "-c", STAGE_FAILING_WITH.format(body=body)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("bug", BUGS)
def test_a_bug_inside_a_stage_shows_its_traceback(tmp_path, bug):
    body, last_line = BUGS[bug]
    done = run_stats_stage(tmp_path, body)
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(last_line), done.stderr
    assert "error:" not in done.stderr.split("Traceback")[0]  # no one-line "bad input" report before it


def test_bad_input_inside_a_stage_is_one_line(tmp_path):
    done = run_stats_stage(tmp_path, 'raise DataError("artifacts/data/prepared.npz: not what was expected")')
    assert done.returncode == 2
    assert done.stderr == "trickbench stats: error: artifacts/data/prepared.npz: not what was expected\n"


@pytest.mark.parametrize("name", ["ParamsError", "GridError", "DataError", "NetworkError", "TrackingError",
                                  "UnreadableFileError", "MissingInputError", "UnknownComponentError"])
def test_every_bad_input_class_keeps_its_message_as_the_line(name):
    import trickbench.errors as errors

    cls = getattr(errors, name)
    error = cls("component", "x", ["a", "b"]) if name == "UnknownComponentError" else cls("f.json: why")
    assert isinstance(error, BadInput)
    assert str(error) == ("unknown component 'x'; valid names: a, b" if name == "UnknownComponentError"
                          else "f.json: why")


def test_module_bad_input_classes_are_bad_input():
    from trickbench.claims import ClaimsError
    from trickbench.slots import SlotError
    from trickbench.versions import VersionsError

    for cls in (ClaimsError, SlotError, VersionsError):
        assert issubclass(cls, BadInput) and issubclass(cls, LookupError)  # old `except LookupError` still hold


# ------------------------------------------------------------------------------- the readers name the file
def test_read_json_names_a_missing_or_garbled_file(tmp_path):
    with pytest.raises(MissingInputError, match=r"absent\.json: missing"):
        read_json(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(UnreadableFileError, match=r"bad\.json: unreadable \(JSONDecodeError"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"binary\.json: unreadable \(UnicodeDecodeError"):  # still a ValueError
        read_json(tmp_path / "binary.json")
    (tmp_path / "good.json").write_text(json.dumps({"a": [1, 2]}))
    assert read_json(tmp_path / "good.json") == {"a": [1, 2]}


def prepared_file(tmp_path):
    images = {split: np.zeros((2, 4, 4, 1), np.uint8) for split in ("train", "val", "test")}
    labels = {split: np.array([0, 1]) for split in ("train", "val", "test")}
    path = tmp_path / "prepared.npz"
    save_prepared(path, Prepared(images, labels, ["a", "b"]))
    return path


def test_load_prepared_names_a_missing_truncated_or_foreign_file(tmp_path):
    path = prepared_file(tmp_path)
    assert load_prepared(path).class_names == ["a", "b"]
    with pytest.raises(MissingInputError, match=r"absent\.npz: missing; run the prepare stage"):
        load_prepared(tmp_path / "absent.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(UnreadableFileError, match=r"truncated\.npz: unreadable \(BadZipFile"):
        load_prepared(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UnreadableFileError, match=r"garbage\.npz: unreadable"):
        load_prepared(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, images_train=np.zeros(3))
    with pytest.raises(UnreadableFileError, match=r"foreign\.npz: lacks the arrays \['class_names', 'images_val'"):
        load_prepared(foreign)


def test_load_prepared_names_a_member_whose_data_are_damaged(tmp_path):
    """The central directory intact, one member's bytes flipped: the CRC check fails while reading."""
    path = prepared_file(tmp_path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("images_train.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")  # after the local header
    data[start + info.compress_size - 1] ^= 0xFF  # the last byte of the array
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match=r"prepared\.npz: unreadable \(BadZipFile: Bad CRC"):
        load_prepared(path)


def test_load_stats_names_a_missing_or_incomplete_npz(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"channel_mean": [0.5]}))
    assert load_stats(tmp_path / "stats.json")["channel_mean"].tolist() == [0.5]
    with pytest.raises(MissingInputError, match=r"stats\.npz: missing; run the stats stage"):
        load_stats(tmp_path / "stats.json", tmp_path / "stats.npz")
    np.savez(tmp_path / "partial.npz", **{key: np.zeros(1) for key in ARRAY_KEYS[:2]})
    with pytest.raises(UnreadableFileError, match=r"partial\.npz: lacks the arrays \['whiten_eigenvectors'"):
        load_stats(tmp_path / "stats.json", tmp_path / "partial.npz")
    (tmp_path / "stats.json").write_text("{not json")
    with pytest.raises(DataError, match=r"stats\.json: unreadable"):
        load_stats(tmp_path / "stats.json")
