"""Decoding CIFAR-10 through the `cifar10` source's load() (GitHub issue 3; target: <= 60 s on 2 cores).

Measured: trickbench.data.sources.load("cifar10", {train_archive, test_archive}) on the workplace's
full ZIPs (50,000 + 10,000 JPEGs; locate with sha256 checks against MANIFEST.json, then decoding in a
process pool, one worker per CPU). Baseline, in the same run: a single-process loop
`np.asarray(Image.open(BytesIO(zip.read(name))).convert("RGB"))` over a sample of members, extrapolated
to all 60,000 images.

    python benchmarks/prepare.py            # the full archives
    python benchmarks/prepare.py --quick    # the 10,000 + 2,000 image subsets: a test of the script
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import zipfile

from _common import add_cifar10_argument, cifar10_archive, header, ratio_line, use_cifar10_dir

TARGET_SECONDS = 60.0


def naive_seconds_per_image(archive: str, sample: int) -> float:
    """Single-process PIL decode of `sample` members spread over the archive, seconds per image."""
    import numpy as np
    from PIL import Image

    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))]
        step = max(1, len(names) // sample)
        chosen = names[::step][:sample]
        started = time.perf_counter()
        for name in chosen:
            array = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))
            assert array.shape == (32, 32, 3)
        return (time.perf_counter() - started) / len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the subset ZIPs: checks the script")
    parser.add_argument("--sample", type=int, default=None, help="images in the single-process baseline (3000)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: the CPUs)")
    add_cifar10_argument(parser)
    args = parser.parse_args()
    use_cifar10_dir(args)
    suffix = "_subset" if args.quick else ""
    train_zip, test_zip = (str(cifar10_archive(f"cifar10_{split}{suffix}.zip")) for split in ("train", "test"))
    sample = args.sample or (300 if args.quick else 3000)

    header("prepare", torch_info=False)
    from trickbench.data.sources import load

    per_image = naive_seconds_per_image(train_zip, sample)
    with tempfile.TemporaryDirectory() as raw_dir:
        started = time.perf_counter()
        data = load("cifar10", {"train_archive": train_zip, "test_archive": test_zip}, raw_dir, progress=False,
                    workers=args.workers)
        seconds = time.perf_counter() - started
    n = len(data.train) + len(data.test)
    single = None
    if not args.quick and (args.workers or os.cpu_count() or 1) > 1:
        with tempfile.TemporaryDirectory() as raw_dir:
            started = time.perf_counter()
            load("cifar10", {"train_archive": train_zip, "test_archive": test_zip}, raw_dir, progress=False,
                 workers=1)
            single = time.perf_counter() - started
        print(f"load(workers=1): {single:.1f} s")
    naive = per_image * n
    print(f"load(): {len(data.train):,} train + {len(data.test):,} test images {data.train.images.shape[1:]} "
          f"in {seconds:.1f} s ({n / seconds:,.0f} images/s, workers: {args.workers or os.cpu_count()})")
    print(f"single-process PIL loop: {per_image * 1e6:.0f} µs/image on {sample:,} images -> {naive:.1f} s "
          f"for {n:,} (extrapolated)")
    ratio_line("prepare_decode", naive, seconds, what="single-process PIL loop (extrapolated)",
               baseline_what="cifar10 load()", unit="s",
               target=None if args.quick else f"load() <= {TARGET_SECONDS:g} s",
               met=None if args.quick else seconds <= TARGET_SECONDS)
    if single is not None:
        ratio_line("prepare_pool", single, seconds, what="load(workers=1)", baseline_what="load()", unit="s")


if __name__ == "__main__":
    main()
