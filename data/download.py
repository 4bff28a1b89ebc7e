"""Downloads MovieLens archives from GroupLens, verifies them and unpacks them safely into a cache.

The data may be used for research but not redistributed, so the project never ships it: users download it
with ``ondevice-rec download NAME`` (or point ``--data-dir`` at a copy they already have).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Callable, Optional

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclasses.dataclass(frozen=True)
class Archive:
    name: str
    size: int
    sha256: str

    @property
    def url(self) -> str:
        return f"{BASE_URL}{self.name}.zip"


# Sizes and SHA-256 digests of the official archives (as recorded by TensorFlow Datasets). GroupLens
# refreshes ml-latest-small from time to time; a mismatch there means a newer release, not tampering.
ARCHIVES = {
    a.name: a for a in (
        Archive("ml-100k", 4924029, "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
        Archive("ml-1m", 5917549, "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
        Archive("ml-latest-small", 978202, "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
        Archive("ml-25m", 261978986, "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"),
    )
}


class DownloadError(RuntimeError):
    """The archive could not be fetched or did not verify."""


def default_cache_dir() -> str:
    return os.environ.get("ONDEVICE_REC_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ondevice-rec"))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_extract(zip_path: str, target_dir: str) -> None:
    """Extracts ``zip_path`` into ``target_dir``, refusing members that would land outside it."""
    root = os.path.realpath(target_dir)
    with zipfile.ZipFile(zip_path) as archive:
        for member in archive.infolist():
            destination = os.path.realpath(os.path.join(root, member.filename))
            if os.path.commonpath([root, destination]) != root:
                raise DownloadError(f"{zip_path}: member {member.filename!r} would extract outside {target_dir}")
        archive.extractall(root)


def _fetch(url: str, destination: str, expected_size: int,
           progress: Optional[Callable[[int, int], None]]) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        done = 0
        while True:
            block = response.read(1 << 20)
            if not block:
                break
            out.write(block)
            done += len(block)
            if progress:
                progress(done, expected_size)


def download(name: str, cache_dir: Optional[str] = None,
             progress: Optional[Callable[[int, int], None]] = None,
             fetch: Callable[..., None] = _fetch) -> str:
    """Returns the unpacked folder of archive ``name``, downloading and verifying it on first use."""
    if name not in ARCHIVES:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(ARCHIVES))}")
    archive = ARCHIVES[name]
    cache_dir = cache_dir or default_cache_dir()
    data_dir = os.path.join(cache_dir, name)
    if os.path.isdir(data_dir) and os.path.exists(os.path.join(data_dir, ".verified")):
        return data_dir
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{name}-") as work:
        zip_path = os.path.join(work, f"{name}.zip")
        try:
            fetch(archive.url, zip_path, archive.size, progress)
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(
                f"could not download {archive.url} ({e}). This machine may be offline: download and unzip the "
                f"archive elsewhere and pass its folder with --data-dir, e.g. --data-dir /path/to/{name}") from e
        digest = sha256_of(zip_path)
        if digest != archive.sha256:
            raise DownloadError(f"{archive.url}: checksum mismatch (sha256 {digest}, expected {archive.sha256}); "
                                f"the download is corrupt or the archive changed upstream")
        unpacked = os.path.join(work, "unpacked")
        safe_extract(zip_path, unpacked)
        inner = os.path.join(unpacked, name)  # the archives hold one top-level folder named like the archive
        source = inner if os.path.isdir(inner) else unpacked
        open(os.path.join(source, ".verified"), "w").close()
        if os.path.isdir(data_dir):
            shutil.rmtree(data_dir)
        os.replace(source, data_dir)
    return data_dir


def print_progress(done: int, total: int) -> None:
    percent = 100.0 * done / total if total else 0.0
    sys.stderr.write(f"\r  downloaded {done / 1e6:.1f} / {total / 1e6:.1f} MB ({percent:.0f}%)")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
