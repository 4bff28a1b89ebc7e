"""Versioned, atomic publishing into a serving directory, and the names of the published files (no TFX or
TensorFlow imports: apps, the CLI and the demo read the layout from here).

Layout of a serving directory::

    serving/
      20261122T110305/   model.tflite  metadata.json  eval.json  vocabulary.json
      latest -> 20261122T110305

A version is written into a hidden temporary folder and renamed into place, then ``latest`` is replaced by a
rename of a fresh symlink, so readers never see a half-written version and a crash leaves the previous
version serving.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Dict, List, Optional

from ondevice_rec.modules.features import VOCABULARY_FILE

LATEST = "latest"
MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
EVAL_FILE = "eval.json"
PUBLISHED_FILES = (MODEL_FILE, METADATA_FILE, EVAL_FILE, VOCABULARY_FILE)


def new_version_name(serving_dir: str) -> str:
    """A sortable, unique version name: the UTC time, with a suffix if that second is taken."""
    base = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name, n = base, 1
    while os.path.exists(os.path.join(serving_dir, name)):
        n += 1
        name = f"{base}-{n}"
    return name


def current_version(serving_dir: str) -> Optional[str]:
    link = os.path.join(serving_dir, LATEST)
    if not os.path.islink(link):
        return None
    target = os.readlink(link)
    return os.path.basename(target) if os.path.isdir(os.path.join(serving_dir, target)) else None


def read_metadata(version_dir: str) -> dict:
    with open(os.path.join(version_dir, METADATA_FILE)) as f:
        return json.load(f)


def publish(serving_dir: str, files: Dict[str, bytes], keep_versions: int = 5,
            version: Optional[str] = None) -> str:
    """Writes ``files`` as a new version, points ``latest`` at it and prunes old versions; returns its path."""
    os.makedirs(serving_dir, exist_ok=True)
    remove_leftovers(serving_dir)
    version = version or new_version_name(serving_dir)
    staging = os.path.join(serving_dir, f".staging-{version}-{os.getpid()}")
    final = os.path.join(serving_dir, version)
    try:
        os.makedirs(staging)
        for name, content in files.items():
            with open(os.path.join(staging, name), "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    link_tmp = os.path.join(serving_dir, f".{LATEST}-{os.getpid()}")
    if os.path.lexists(link_tmp):
        os.remove(link_tmp)
    os.symlink(version, link_tmp)
    os.replace(link_tmp, os.path.join(serving_dir, LATEST))
    prune(serving_dir, keep_versions)
    return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(serving_dir: str) -> List[str]:
    """Removes staging folders and temporary links left by publishers that died (their pid is gone)."""
    removed = []
    for name in os.listdir(serving_dir):
        if not (name.startswith(".staging-") or name.startswith(f".{LATEST}-")):
            continue
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            path = os.path.join(serving_dir, name)
            if os.path.islink(path) or not os.path.isdir(path):
                os.remove(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def list_versions(serving_dir: str) -> List[str]:
    if not os.path.isdir(serving_dir):
        return []
    return sorted(d for d in os.listdir(serving_dir)
                  if not d.startswith(".") and d != LATEST and os.path.isdir(os.path.join(serving_dir, d)))


def prune(serving_dir: str, keep_versions: int) -> List[str]:
    """Removes all but the newest ``keep_versions`` versions (never the one ``latest`` points at)."""
    serving = current_version(serving_dir)
    versions = list_versions(serving_dir)
    removed = []
    for version in versions[:max(0, len(versions) - max(1, keep_versions))]:
        if version != serving:
            shutil.rmtree(os.path.join(serving_dir, version), ignore_errors=True)
            removed.append(version)
    return removed
