"""``ondevice-rec-beam-worker``: the boot command of a Python SDK worker in Beam's PROCESS environment.

A Flink TaskManager runs it (``--environment_type=PROCESS``, ``pipeline/flink.py``) with the Fn API endpoints of
one worker. It does what Beam's Go boot binary does in Beam's SDK container, which no package registry ships:
asks the runner's provision service for the job's options and staged files, installs the staged Python packages
(the ``--setup_file`` sdist ``workflow.tar.gz`` and ``--extra_package`` files) into a folder cached by content
hash, put ahead of the environment's own packages, then becomes ``apache_beam.runners.worker.sdk_worker_main``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

STAGED_SDIST = "workflow.tar.gz"  # Beam's name for the --setup_file package it builds and stages
EXTRA_PACKAGES_LIST = "extra_packages.txt"
MAIN_SESSION = "pickled_main_session"


def _provision_info(endpoint: str, worker_id: str):
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc
    with grpc.insecure_channel(endpoint) as channel:
        return beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=[("worker_id", worker_id)]).info


def _staged_name(artifact) -> str:
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    if artifact.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
        return beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name
    return ""


def _materialize(endpoint: str, worker_id: str, artifacts, folder: str) -> Dict[str, str]:
    """Fetches every staged artifact from the runner's artifact service: {staged name: local path}."""
    import grpc
    from apache_beam.portability.api import beam_artifact_api_pb2, beam_artifact_api_pb2_grpc
    files = {}
    os.makedirs(folder, exist_ok=True)
    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(channel)
        for artifact in artifacts:
            name = _staged_name(artifact)
            if not name:
                continue
            path = os.path.join(folder, os.path.basename(name))
            with open(path, "wb") as out:
                for chunk in stub.GetArtifact(beam_artifact_api_pb2.GetArtifactRequest(artifact=artifact),
                                              metadata=[("worker_id", worker_id)]):
                    out.write(chunk.data)
            files[name] = path
    return files


def _packages(files: Dict[str, str]) -> List[str]:
    """The staged Python packages to install: the setup_file sdist, then the listed extra packages."""
    packages = [files[STAGED_SDIST]] if STAGED_SDIST in files else []
    if EXTRA_PACKAGES_LIST in files:
        with open(files[EXTRA_PACKAGES_LIST]) as f:
            packages += [files[name] for name in (line.strip() for line in f) if name in files]
    return packages


def install_packages(packages: List[str], cache_root: Optional[str] = None) -> Optional[str]:
    """Installs ``packages`` (no dependencies: the environment has them) into a folder named by their content
    hash, once per host; returns the folder (None without packages)."""
    if not packages:
        return None
    digest = hashlib.sha256()
    for path in packages:
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    root = cache_root or os.path.join(tempfile.gettempdir(), "ondevice-rec-beam-worker")
    target = os.path.join(root, digest.hexdigest()[:24])
    os.makedirs(root, exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two TaskManagers booting at once install once
        if not os.path.exists(os.path.join(target, ".installed")):
            result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                                     "--disable-pip-version-check", "--no-build-isolation", "--upgrade",
                                     "--target", target] + packages, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"installing the staged packages {packages} failed:\n{result.stderr[-3000:]}")
            open(os.path.join(target, ".installed"), "w").close()
    _prune(root, keep=target)
    return target


def _prune(root: str, keep: str, max_age_seconds: float = 86400.0) -> None:
    """Deletes installs older than a day (Beam builds a new sdist for every stage, so each gets its own)."""
    import shutil
    import time
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if path != keep and os.path.isdir(path) and time.time() - os.path.getmtime(path) > max_age_seconds:
            shutil.rmtree(path, ignore_errors=True)
            try:
                os.remove(path + ".lock")
            except OSError:
                pass


def worker_environment(info, args: argparse.Namespace, site: Optional[str], semi_persistent: str) -> Dict[str, str]:
    """The environment variables ``sdk_worker_main`` reads (those Beam's boot sets)."""
    from google.protobuf import json_format
    from apache_beam.portability.api import endpoints_pb2
    env = dict(os.environ)
    env.update(
        WORKER_ID=args.id, SEMI_PERSISTENT_DIRECTORY=semi_persistent,
        PIPELINE_OPTIONS=json_format.MessageToJson(info.pipeline_options),
        LOGGING_API_SERVICE_DESCRIPTOR=str(endpoints_pb2.ApiServiceDescriptor(
            url=args.logging_endpoint or info.logging_endpoint.url)),
        CONTROL_API_SERVICE_DESCRIPTOR=str(endpoints_pb2.ApiServiceDescriptor(
            url=args.control_endpoint or info.control_endpoint.url)),
        RUNNER_CAPABILITIES=" ".join(info.runner_capabilities))
    if info.status_endpoint.url:
        env["STATUS_API_SERVICE_DESCRIPTOR"] = str(info.status_endpoint)
    if site:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH", "")]))
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    return env


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("id", "provision_endpoint", "logging_endpoint", "control_endpoint", "artifact_endpoint",
                 "semi_persist_dir"):
        parser.add_argument("--" + name, default="")
    args, _ = parser.parse_known_args(argv)
    if not args.provision_endpoint:
        parser.error("--provision_endpoint is required (a Beam runner starts this command)")
    info = _provision_info(args.provision_endpoint, args.id)
    semi_persistent = args.semi_persist_dir or tempfile.mkdtemp(prefix=f"beam-worker-{args.id}-")
    staged = os.path.join(semi_persistent, "staged")
    files = _materialize(args.artifact_endpoint or info.artifact_endpoint.url, args.id, info.dependencies, staged)
    site = install_packages(_packages(files))
    env = worker_environment(info, args, site, semi_persistent)
    sys.stderr.write(f"ondevice-rec-beam-worker {args.id}: {len(files)} staged file(s)"
                     f"{', packages in ' + site if site else ''}\n")
    os.execve(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"], env)


if __name__ == "__main__":
    main()
