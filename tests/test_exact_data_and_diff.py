"""Images and labels are read exactly or refused, a data set's decoded size is bounded before anything is
allocated, and `trickbench diff` takes only a results folder or a git commit, read bounded.

Bad input, through the real CLI, from tables: each case exits 2 with one `trickbench <stage>: error:` line
naming the culprit, no traceback, nothing written (prepare-stage cases: nothing beyond the download record;
diff cases: nothing at all) and ends within TIMEOUT_S. Then the conversions that are exact, checked pixel for
pixel against arithmetic written here, not against the loader.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from conftest import BIN, REPO, tiny_params, write_params
from data_fixtures import files_under, md5, png_header_only, py2_pickle, run_stage, write_folder, write_tar_entries

TIMEOUT_S = 60
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def rgba(alpha: int) -> Image.Image:
    pixels = np.full((5, 6, 4), 200, dtype=np.uint8)
    pixels[:, :, 3] = 255
    pixels[0, 0, 3] = alpha
    return Image.fromarray(pixels, "RGBA")


def palette(transparent: bool) -> Image.Image:
    image = Image.fromarray(np.arange(30, dtype=np.uint8).reshape(5, 6), "L").convert("P")
    if transparent:
        image.info["transparency"] = 3
    return image


def int32_image(top: int) -> Image.Image:
    return Image.fromarray(np.linspace(0, top, 30).astype(np.int32).reshape(5, 6), "I")


def gray16(values: np.ndarray) -> Image.Image:
    image = Image.fromarray(values.astype(np.uint16))
    assert image.mode == "I;16"
    return image


# ---------------------------------------------------------------------------------------------------
# data cases: download passes, prepare refuses
# ---------------------------------------------------------------------------------------------------
@dataclass
class DataCase:
    id: str
    build: Callable[[Path], dict]  # writes the input under the folder, returns params `data`
    message: str  # regex the error line must match
    limits: dict = field(default_factory=dict)


def folder_with(odd: bytes | Callable[[], bytes], name: str = "odd.png", **options) -> Callable[[Path], dict]:
    """An image folder of two classes of plain 6x5 RGB PNGs, one of them replaced by `odd`."""
    def build(root: Path) -> dict:
        plain = encoded(Image.new("RGB", (6, 5), (10, 20, 30)))
        members = {f"train/{c}/{i}.png": plain for c in "ab" for i in range(3)}
        members[f"train/b/{name}"] = odd() if callable(odd) else odd
        return {"source": "imagefolder", "options": {"path": str(write_folder(root / "images", members)), **options}}
    return build


def cifar_labels(labels: list) -> Callable[[Path], dict]:
    """A re-packed official-format cifar-10-python.tar.gz whose data_batch_1 carries `labels`."""
    def build(root: Path) -> dict:
        rng = np.random.default_rng(0)
        files = {"batches.meta": py2_pickle({b"label_names": [c.encode() for c in CIFAR10]})}
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            given = labels if batch == "data_batch_1" else [0, 1, 2, 3]
            files[batch] = py2_pickle({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": given})
        path = write_tar_entries(root / "cifar-10-python.tar.gz",
                                 [(f"cifar-10-batches-py/{n}", d) for n, d in files.items()])
        return {"source": "cifar10", "options": {"archive": str(path), "md5": md5(path)}}
    return build


def photos(n: int, width: int, height: int, **options) -> Callable[[Path], dict]:
    """n images whose headers declare width x height (the data is one row: only headers are read)."""
    def build(root: Path) -> dict:
        members = {f"train/{'ab'[i % 2]}/{i:03d}.png": png_header_only(width, height) for i in range(n)}
        return {"source": "imagefolder", "options": {"path": str(write_folder(root / "photos", members)), **options}}
    return build


DATA_CASES = [
    DataCase("rgba-with-a-transparent-pixel", folder_with(lambda: encoded(rgba(0))),
             r"images/train/b/odd\.png: mode RGBA with transparent pixels: the pipeline has no alpha channel"),
    DataCase("grey-alpha-half-transparent", folder_with(lambda: encoded(rgba(128).convert("LA"))),
             r"images/train/b/odd\.png: mode LA with transparent pixels"),
    DataCase("palette-with-a-transparent-colour", folder_with(lambda: encoded(palette(True))),
             r"images/train/b/odd\.png: mode P with transparent pixels"),
    DataCase("cmyk-jpeg", folder_with(lambda: encoded(Image.new("CMYK", (6, 5), (0, 50, 100, 0)), "JPEG"), "odd.jpg"),
             r"images/train/b/odd\.jpg: CMYK \(print colours\): converting it needs its colour profile"),
    DataCase("float-tiff", folder_with(lambda: encoded(Image.new("F", (6, 5), 0.5), "TIFF"), "odd.tif"),
             r"images/train/b/odd\.tif: 32-bit floating-point pixels"),
    DataCase("32-bit-values-beyond-16-bits", folder_with(lambda: encoded(int32_image(70_000), "TIFF"), "odd.tif"),
             r"images/train/b/odd\.tif: mode I with values 0\.\.70000, outside 16 bits"),
    DataCase("lab-tiff", folder_with(lambda: encoded(Image.new("LAB", (6, 5), (50, 0, 0)), "TIFF"), "odd.tif"),
             r"images/train/b/odd\.tif: CIELAB colours"),
    DataCase("cifar-label-not-an-integer", cifar_labels([0, 3.7, 1, 2]),
             r"cifar-10-python\.tar\.gz: member 'cifar-10-batches-py/data_batch_1': key b'labels' holds 3\.7 \(float\); "
             r"expected integer class indices 0\.\.9"),
    DataCase("cifar-label-a-whole-float", cifar_labels([0, 3.0, 1, 2]),
             r"data_batch_1': key b'labels' holds 3\.0 \(float\)"),
    DataCase("cifar-labels-as-class-names", cifar_labels([b"cat", b"dog", b"cat", b"ship"]),
             r"data_batch_1': key b'labels' holds b'cat' \(bytes\); expected integer class indices"),
    DataCase("cifar-labels-as-booleans", cifar_labels([True, False, True, False]),
             r"data_batch_1': key b'labels' holds True \(bool\)"),
    DataCase("cifar-label-out-of-range", cifar_labels([0, 1, 10, 2]),
             r"data_batch_1': key b'labels': labels outside 0\.\.9"),
    DataCase("eighty-big-photos-without-image-size", photos(80, 6000, 4000),
             r"photos: 80 images of 6000x4000x3 decode to 5\.36\d* GiB, above 4 GiB \(MAX_DECODED_BYTES\); "
             r"set data\.options\.image_size to resize every image"),
    DataCase("decoded-size-counts-image-size-and-channels", photos(8, 50, 40, image_size=16, channels=1),
             r"photos: 8 images of 16x16x1 decode to 2 KiB, above 1000 bytes \(MAX_DECODED_BYTES\)",
             limits={"MAX_DECODED_BYTES": 1000}),
]


def run_data_case(case: DataCase, root: Path) -> dict:
    workdir, inputs = root / "project", root / "inputs"
    workdir.mkdir(parents=True)
    inputs.mkdir()
    data = case.build(inputs)
    params = tiny_params(data={**data, "val_fraction": 0.15, "test_fraction": 0.15, "split_seed": 0})
    params["tracking"]["enabled"] = False
    write_params(workdir / "params.yaml", params)
    outcome = {"download": run_stage(workdir, "download", case.limits, TIMEOUT_S)}
    if outcome["download"].returncode == 0:
        outcome["prepare"] = run_stage(workdir, "prepare", case.limits, TIMEOUT_S)
    outcome["artifacts"] = files_under(workdir / "artifacts")
    return outcome


@pytest.fixture(scope="module")
def data_outcomes(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("exact_data")
    with ThreadPoolExecutor(4) as pool:
        return dict(zip([c.id for c in DATA_CASES], pool.map(lambda c: run_data_case(c, root / c.id), DATA_CASES)))


def assert_one_line(done: subprocess.CompletedProcess, command: str, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trickbench {command}: error: "), done.stderr
    assert re.search(message, lines[0]), f"{message!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", DATA_CASES, ids=[case.id for case in DATA_CASES])
def test_data_that_cannot_be_read_exactly_is_refused(case, data_outcomes):
    outcome = data_outcomes[case.id]
    assert outcome["download"].returncode == 0, outcome["download"].stderr
    assert_one_line(outcome["prepare"], "prepare", case.message)
    assert outcome["artifacts"] == ["raw/download.json"]


# ---------------------------------------------------------------------------------------------------
# exact conversions, pixel for pixel
# ---------------------------------------------------------------------------------------------------
GREY16 = np.array([[0, 1, 128, 129, 256, 257], [32767, 32768, 65278, 65279, 65534, 65535]] * 3)[:5]
EXACT = [  # id, image, expected (H, W, C) uint8 for channels 3, written from the arithmetic
    ("16-bit-grey-scaled-not-clipped", lambda: encoded(gray16(GREY16)),
     lambda: np.repeat(np.floor(GREY16 * 255 / 65535 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)),
    ("16-bit-pgm-within-16-bits", lambda: encoded(gray16(GREY16), "PPM"),
     lambda: np.repeat(np.floor(GREY16 * 255 / 65535 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)),
    ("palette-without-transparency", lambda: encoded(palette(False)),
     lambda: np.repeat(np.arange(30, dtype=np.uint8).reshape(5, 6)[:, :, None], 3, axis=2)),
    ("rgba-opaque-everywhere", lambda: encoded(rgba(255)), lambda: np.full((5, 6, 3), 200, dtype=np.uint8)),
    ("bilevel", lambda: encoded(Image.fromarray(np.eye(5, 6, dtype=bool))),
     lambda: np.repeat((np.eye(5, 6) * 255).astype(np.uint8)[:, :, None], 3, axis=2)),
]


@pytest.mark.parametrize("case_id, image, expected", EXACT, ids=[case[0] for case in EXACT])
def test_representable_modes_are_converted_exactly(case_id, image, expected, tmp_path):
    from trickbench.data.decode import DecodeSpec, decode_image

    data = image()
    assert np.array_equal(decode_image(data, DecodeSpec(channels=3), case_id), expected())
    grey = decode_image(data, DecodeSpec(channels=1), case_id)
    if np.ptp(expected().astype(int), axis=2).max() == 0:  # grey input: one channel holds the same values
        assert np.array_equal(grey[:, :, 0], expected()[:, :, 0])


def test_sixteen_bit_scaling_rounds_to_the_nearest_level():
    """round(v * 255 / 65535): 129 is the first 16-bit value nearer to level 1 than to 0 (128 * 255 / 65535 is
    0.498), 65407 the first nearer to 255; clipping would make every value above 255 white."""
    from trickbench.data.decode import DecodeSpec, decode_image

    values = np.array([[128, 129, 32767, 32768, 65406, 65407, 65535]])
    out = decode_image(encoded(gray16(values)), DecodeSpec(channels=1), "ramp")[0, :, 0].tolist()
    assert out == [0, 1, 127, 128, 254, 255, 255]


def test_integer_labels_of_any_integer_type_are_kept(tmp_path):
    from trickbench.data.sources import load

    data = cifar_labels(np.array([9, 0, 1, 2], dtype=np.uint8))(tmp_path)
    loaded = load("cifar10", data["options"], tmp_path, progress=False)
    assert loaded.train.labels[:4].tolist() == [9, 0, 1, 2] and loaded.train.labels.dtype == np.int64


# ---------------------------------------------------------------------------------------------------
# diff: a results folder or a git commit, read bounded
# ---------------------------------------------------------------------------------------------------
RUNS = "study,point_id,status,test_error\nacts,relu__seed-0,completed,0.05\n"


@dataclass
class DiffCase:
    id: str
    build: Callable[[Path], list[str]]  # writes the input under the folder, returns the two arguments
    message: str


def results_with(**files: bytes | str | Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A results folder `bad` holding `files` (a callable makes the file itself), diffed against a good one."""
    def build(root: Path) -> list[str]:
        good, bad = root / "good", root / "bad"
        for folder in (good, bad):
            folder.mkdir()
        (good / "runs.csv").write_text(RUNS)
        for name, content in files.items():
            path = bad / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if callable(content):
                content(path)
            else:
                path.write_bytes(content.encode() if isinstance(content, str) else content)
        return [str(good), str(bad)]
    return build


def deep(path: Path) -> None:
    (path / "/".join(["d"] * 12)).mkdir(parents=True)


DIFF_CASES = [
    DiffCase("the-root-folder", lambda root: ["/", "HEAD"],
             r"^trickbench diff: error: /: not a results folder \(no manifest\.json or runs\.csv in it\)"),
    DiffCase("proc", lambda root: ["/proc", "HEAD"], r"/proc: not a results folder"),
    DiffCase("a-folder-above-results", lambda root: [str(REPO), "HEAD"], rf"{re.escape(str(REPO))}: not a results folder"),
    DiffCase("a-device", lambda root: ["/dev/zero", "HEAD"], r"/dev/zero: neither a results folder nor a git commit"),
    DiffCase("a-runs-file-not-its-folder", results_with(**{"runs.csv": RUNS}),
             r"nothing"),  # replaced below: the file itself given
    DiffCase("an-option-as-revision", lambda root: ["--", "--output=/tmp/x", "HEAD"],
             r"'--output=/tmp/x': neither a results folder nor a git commit"),
    DiffCase("manifest-of-another-program", results_with(**{"manifest.json": '{"name": "webapp", "version": "2.0"}'}),
             r"bad/manifest\.json: not a trickbench manifest \(manifest_version: expected the number 1, got null\)"),
    DiffCase("manifest-a-json-list", results_with(**{"manifest.json": "[1, 2, 3]"}),
             r"bad/manifest\.json: not a trickbench manifest \(a JSON list, not an object\)"),
    DiffCase("manifest-binary", results_with(**{"manifest.json": bytes(range(256)) * 4}),
             r"bad/manifest\.json: not a trickbench manifest \(unreadable JSON"),
    DiffCase("manifest-too-large", results_with(**{"manifest.json": lambda p: p.write_bytes(b"") or os.truncate(p, 17 * 2**20)}),
             r"bad/manifest\.json: expands to more than 16 MiB \(MANIFEST_MAX_BYTES\)"),
    DiffCase("manifest-a-fifo", results_with(**{"manifest.json": lambda p: os.mkfifo(p)}),
             r"bad/manifest\.json: is a FIFO \(named pipe\), not a regular file"),
    DiffCase("manifest-a-link-to-dev-zero", results_with(**{"manifest.json": lambda p: p.symlink_to("/dev/zero")}),
             r"bad/manifest\.json: is a character device, not a regular file"),
    DiffCase("runs-binary", results_with(**{"runs.csv": b"study,point\x00_id\n\x00\x01\x02\n"}),
             r"bad/runs\.csv: a binary file, not a table the report writes"),
    DiffCase("runs-not-utf8", results_with(**{"runs.csv": b"study,point_id\nacts,\xff\xfe\n"}),
             r"bad/runs\.csv: not UTF-8 text \(byte \d+\)"),
    DiffCase("runs-ragged", results_with(**{"runs.csv": "study,point_id\nacts,a,extra,cells\n"}),
             r"bad/runs\.csv: rows with more or fewer cells than the header"),
    DiffCase("table-below-binary", results_with(**{"runs.csv": RUNS, "acts/summary.csv": b"\x00" * 64}),
             r"bad/acts/summary\.csv: a binary file"),
    DiffCase("folders-too-deep", results_with(**{"runs.csv": RUNS, "x": deep}),
             r"bad/x(/d)+: more than 8 folder levels below \S*bad \(MAX_LISTED_DEPTH\)"),
]
DIFF_CASES[4] = DiffCase("a-runs-file-not-its-folder",
                         lambda root: [results_with(**{"runs.csv": RUNS})(root)[0] + "/runs.csv", "HEAD"],
                         r"good/runs\.csv: neither a results folder nor a git commit")


def run_diff(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(BIN / "trickbench"), "diff", "--root", str(cwd), *argv], cwd=cwd,
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    except subprocess.TimeoutExpired:
        pytest.fail(f"trickbench diff did not end within {TIMEOUT_S} s (a hang or a walk)")


@pytest.fixture
def repo(tmp_path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "empty"], cwd=folder, check=True)
    return folder


@pytest.mark.parametrize("case", DIFF_CASES, ids=[case.id for case in DIFF_CASES])
def test_diff_takes_only_a_results_folder_or_a_commit(case, tmp_path, repo):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    argv = case.build(inputs)
    before = files_under(tmp_path)
    done = run_diff(argv, repo)
    assert_one_line(done, "diff", case.message)
    assert files_under(tmp_path) == before
    assert not Path("/tmp/x").exists()


def test_diff_passes_over_links_inside_a_results_folder(tmp_path, repo):
    """A link to / (or a loop) inside a results folder is never followed: the diff reads only its own files."""
    a, b = results_with(**{"runs.csv": RUNS})(tmp_path)
    (Path(b) / "everything").symlink_to("/")
    (Path(b) / "loop").symlink_to(b)
    done = run_diff([a, b], repo)
    assert done.returncode == 0, done.stderr
    assert ": 0 number(s) changed, 1 unchanged" in done.stdout
