"""Where paths.artifacts and paths.results may be: inside the project directory (the engine's working
directory), or with TRICKBENCH_ALLOW_OUTSIDE=1 anywhere but a system folder; two separate folders, neither
inside the other, neither the project itself nor a folder above it; short enough that every file the
project writes under them stays within PATH_MAX.

Symlinks are resolved first: the check is on where writes would land. A folder inside the project is
never a system folder, wherever the project lives (a CI workspace under /var/lib is fine).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trickbench.errors import ParamsError

ALLOW_OUTSIDE_ENV = "TRICKBENCH_ALLOW_OUTSIDE"

# never written into, not even with the opt-in: the folder and everything inside it. The operating system's
# own trees (FHS), the kernel's virtual file systems, package managers' stores, and macOS's system folders.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/opt", "/proc", "/run", "/sbin", "/snap", "/srv",
                "/sys", "/usr", "/var", "/lost+found", "/nix", "/gnu", "/cdrom", "/System", "/Library",
                "/Applications", "/private/etc", "/private/var")
SYSTEM_TREE_PREFIXES = ("/lib",)  # /lib32, /lib64, /libx32, /libexec: every top-level /lib*
# user temporary folders inside a system tree: a folder inside them is allowed, the folder itself is not
USER_FOLDERS_IN_SYSTEM_TREES = ("/var/tmp",)
# the folder itself only: folders that hold users' own folders (a home, a mounted disk, a temporary folder)
SYSTEM_FOLDERS = ("/", "/root", "/home", "/tmp", "/mnt", "/media", "/Users", "/Volumes", "/private",
                  "/private/tmp")

# the longest path the project builds under paths.artifacts: runs/<study>/<point>/<file> with a study of at
# most 64 bytes and a point id of at most 200 (trickbench.grid) and temporary names (about 60 bytes more)
LONGEST_INNER_PATH = 400
PATH_MAX = 4096
MAX_OUTPUT_DIR_BYTES = PATH_MAX - LONGEST_INNER_PATH


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def system_folder(path: Path) -> str | None:
    """The system folder that the resolved `path` is, or lies in; None if it is neither."""
    if any(folder in path.parents for folder in map(Path, USER_FOLDERS_IN_SYSTEM_TREES)):
        return None
    for tree in SYSTEM_TREES:
        if _is_within(path, Path(tree)):
            return tree
    top = path.parts[1] if len(path.parts) > 1 else ""
    if any(f"/{top}".startswith(prefix) for prefix in SYSTEM_TREE_PREFIXES):
        return f"/{top}"
    return next((folder for folder in SYSTEM_FOLDERS if path == Path(folder)), None)


def _check_one(key: str, given: str, project: Path, source: str, allow_outside: bool) -> Path:
    path = (project / Path(given).expanduser()).resolve()  # symlinks followed: where writes would land
    name = f"{source}: paths.{key}: {given!r}"
    inside = _is_within(path, project) and path != project  # a project may itself live in /srv or /var
    if not inside and (system := system_folder(path)) is not None:
        raise ParamsError(f"{name} resolves to {path}, in the system folder {system}; expected a folder inside "
                          f"the project {project} (even {ALLOW_OUTSIDE_ENV}=1 never allows a system folder)")
    if _is_within(project, path):
        raise ParamsError(f"{name} is the project directory {project} or a folder above it; expected a "
                          "folder inside it, such as artifacts/")
    if not inside and not allow_outside:
        raise ParamsError(f"{name} resolves to {path}, outside the project {project}; expected a folder "
                          f"inside it (or set {ALLOW_OUTSIDE_ENV}=1 to allow a folder outside)")
    if len(os.fsencode(path)) > MAX_OUTPUT_DIR_BYTES:
        raise ParamsError(f"{name} resolves to a path of {len(os.fsencode(path)):,} bytes; expected at most "
                          f"{MAX_OUTPUT_DIR_BYTES:,}, so that the files under it stay within PATH_MAX ({PATH_MAX})")
    return path


def check_output_dirs(params: dict[str, Any], source: str, project: Path | None = None) -> None:
    """paths.artifacts and paths.results under the rules of this module; ParamsError naming the key."""
    project = (project or Path.cwd()).resolve()
    allow_outside = os.environ.get(ALLOW_OUTSIDE_ENV, "") == "1"
    resolved = {key: _check_one(key, params["paths"][key], project, source, allow_outside)
                for key in ("artifacts", "results")}
    artifacts, results = resolved["artifacts"], resolved["results"]
    if artifacts == results:
        raise ParamsError(f"{source}: paths.artifacts and paths.results are the same folder {artifacts}; "
                          "expected two separate folders")
    for inner, outer in (("artifacts", "results"), ("results", "artifacts")):
        if _is_within(resolved[inner], resolved[outer]):
            raise ParamsError(f"{source}: paths.{inner} ({resolved[inner]}) is inside paths.{outer} "
                              f"({resolved[outer]}); expected two separate folders")
