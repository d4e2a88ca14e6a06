"""Fetching an official archive over HTTP(S), safely.

The file is streamed in CHUNK_BYTES pieces to a temporary name in the target's folder
(`.<name>.<random>.part`), its size and MD5 (and sha256, for the record) computed while streaming, and
renamed onto the real name only when every check passes; on any failure (network, HTTP status,
truncation, checksum, Ctrl-C) the temporary file is deleted and nothing is left behind. Every connect
and every read waits at most TIMEOUT_S; a body larger than expected (or than MAX_DOWNLOAD_BYTES when the
size is unknown) is cut off.

Failures are one-line `DataError`s naming the URL; a network that cannot be reached at all (name
resolution, connection refused, no route, timeout) is a `NetworkError` whose message says so and how to
give a local copy instead.

Mirrors: a source's `mirror` option, else the environment variable MIRROR_ENV, replaces the official
base URL (the file name is appended); the checksum stays the official one unless the source's `md5`
option says otherwise (tests serve their own small archive that way).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from trickbench.errors import DataError, NetworkError
from trickbench.io import atomic_path

__all__ = ["NetworkError", "MIRROR_ENV", "TIMEOUT_S", "CHUNK_BYTES", "MAX_DOWNLOAD_BYTES", "mirror_url",
           "download_file"]

MIRROR_ENV = "TRICKBENCH_DATA_MIRROR"
TIMEOUT_S = 30.0  # per connect and per read: a server silent this long is treated as gone
CHUNK_BYTES = 1 << 20
MAX_DOWNLOAD_BYTES = 2**30  # when the expected size is unknown (a mirror with its own md5); the official archives are 163 MiB


def mirror_url(official_url: str, mirror: str | None, *, key: str) -> str:
    """The URL to fetch: `mirror` (an option, named `key` in errors) or $MIRROR_ENV as the base URL
    with the official file name appended, else the official URL. Only http:// and https://."""
    base, where = (mirror, key) if mirror else (os.environ.get(MIRROR_ENV) or None, f"${MIRROR_ENV}")
    if base is None:
        return official_url
    scheme = urllib.parse.urlsplit(base).scheme.lower()
    if scheme not in ("http", "https") or not urllib.parse.urlsplit(base).netloc:
        raise DataError(f"{where}: expected an http:// or https:// base URL, got {base!r}")
    filename = official_url.rsplit("/", 1)[-1]
    return base.rstrip("/") + "/" + filename


def _unreachable_reason(reason: object) -> str | None:
    """Why the network could not be reached, if this error means that; None for other failures."""
    if isinstance(reason, socket.gaierror):
        return f"name resolution failed: {reason.strerror or reason}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {TIMEOUT_S:g} s"
    if isinstance(reason, ssl.SSLError):
        return None
    if isinstance(reason, OSError) and reason.errno is not None:
        return reason.strerror or str(reason)  # ENETUNREACH, EHOSTUNREACH, ...
    return None


def download_file(url: str, target: str | os.PathLike, *, md5: str, expected_bytes: int | None,
                  local_copy: str, progress: bool = True) -> dict:
    """Fetch `url` to `target` atomically, checking the size (if known) and the MD5 while streaming.

    local_copy: the sentence telling the user how to give the file without a download (in every error).
    Returns {"url", "bytes", "md5", "sha256"} of the file now under `target`.
    """
    with atomic_path(target, suffix=".part") as tmp:  # fsynced and renamed only once verified
        with open(tmp, "wb") as out:
            digests = _stream(url, out, md5=md5, expected_bytes=expected_bytes, local_copy=local_copy,
                              progress=progress)
    return {"url": url, **digests}


def _stream(url: str, out, *, md5: str, expected_bytes: int | None, local_copy: str, progress: bool) -> dict:
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "trickbench", "Accept-Encoding": "identity"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DataError(f"download failed: {url}: HTTP {exc.code} {exc.reason}; {local_copy}") from None
    except urllib.error.URLError as exc:
        reason = _unreachable_reason(exc.reason)
        if reason is not None:
            raise NetworkError(f"network unreachable: cannot fetch {url} ({reason}); {local_copy}") from None
        raise DataError(f"download failed: {url}: {exc.reason}; {local_copy}") from None
    except (TimeoutError, socket.timeout):
        raise NetworkError(f"network unreachable: cannot fetch {url} (no answer within {TIMEOUT_S:g} s); "
                           f"{local_copy}") from None
    except (http.client.HTTPException, OSError) as exc:
        raise DataError(f"download failed: {url}: {type(exc).__name__}: {exc}; {local_copy}") from None
    with response:
        declared = response.headers.get("Content-Length")
        try:
            declared_bytes = int(declared) if declared is not None else None
        except ValueError:
            declared_bytes = None
        limit = expected_bytes if expected_bytes is not None else MAX_DOWNLOAD_BYTES
        exactly = "exactly" if expected_bytes is not None else "at most"
        if declared_bytes is not None and (declared_bytes > limit or (expected_bytes is not None
                                                                       and declared_bytes != expected_bytes)):
            raise DataError(f"download failed: {url}: the server announces {declared_bytes} bytes, expected "
                            f"{exactly} {limit}; {local_copy}")
        want = declared_bytes if declared_bytes is not None else expected_bytes
        md5_digest, sha256_digest, received = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
        bar = tqdm(total=want, desc=f"download {url.rsplit('/', 1)[-1]}", unit="B", unit_scale=True,
                   file=sys.stderr, disable=None if progress else True, leave=False)
        try:
            while True:
                try:
                    block = response.read1(min(CHUNK_BYTES, limit + 1 - received))  # what has arrived
                except (http.client.HTTPException, OSError) as exc:  # reset, timeout, IncompleteRead
                    what = f"no data for {TIMEOUT_S:g} s" if isinstance(exc, (TimeoutError, socket.timeout)) \
                        else f"{type(exc).__name__}: {exc}"
                    raise DataError(f"download failed: {url}: connection lost after {received} of "
                                    f"{want if want is not None else '?'} bytes ({what}); {local_copy}") from None
                if not block:
                    break
                received += len(block)
                if received > limit:
                    raise DataError(f"download failed: {url}: more than {limit} bytes, expected {exactly} {limit}; "
                                    f"{local_copy}")
                md5_digest.update(block)
                sha256_digest.update(block)
                out.write(block)
                bar.update(len(block))
        finally:
            bar.close()
    if want is not None and received != want:
        raise DataError(f"download failed: {url}: connection closed after {received} of {want} bytes "
                        f"(truncated); {local_copy}")
    got = md5_digest.hexdigest()
    if got != md5:
        raise DataError(f"download failed: {url}: MD5 {got} of the {received} bytes received does not match the "
                        f"expected {md5} (corrupt or not the official file); {local_copy}")
    return {"bytes": received, "md5": got, "sha256": sha256_digest.hexdigest()}
