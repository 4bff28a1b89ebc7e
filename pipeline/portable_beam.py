"""A local multi-worker portable Beam engine: Beam's Python job service plus an external SDK worker pool.

This is the architecture Flink, Spark and Dataflow use for Python pipelines (a job server receives the portable
pipeline; SDK harness processes execute the Python stages over the Fn API, gRPC): Beam's own job service
(``LocalJobServicer``, run by this module's ``main``) is the engine and ``worker_pool_main`` starts the SDK
worker processes. It needs no download, so it runs offline and in CI. The pipeline's Beam stages get it through
their usual ``beam_pipeline_args``:

    --runner=PortableRunner --job_endpoint=localhost:JOB_PORT
    --environment_type=EXTERNAL --environment_config=localhost:POOL_PORT --direct_num_workers=W

On a real cluster only these arguments change (README: Dataflow, Flink, Spark). Beam 2.59's stock
``local_job_service_main`` leaves its runner at one worker (it calls ``FnApiRunner.run_via_runner_api``, which
never reads ``direct_num_workers``: measured, one SDK worker per job); ``ParallelBeamJob`` passes the job's
``direct_num_workers`` on, through the job service's ``beam_job_type`` hook, so each stage runs on W workers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional


def _parallel_beam_job():
    from apache_beam.options import pipeline_options
    from apache_beam.portability.api import beam_job_api_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    class ParallelBeamJob(local_job_service.BeamJob):
        """A job of the local job service that runs every stage on ``direct_num_workers`` SDK workers."""

        def _invoke_runner(self):
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            options = self.pipeline_options()
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            workers = options.view_as(pipeline_options.DirectOptions).direct_num_workers
            runner._num_workers = max(1, int(float(workers or 1)))  # pylint: disable=protected-access
            return runner.run_via_runner_api(self._pipeline_proto, options)

    return ParallelBeamJob


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m ondevice_rec.pipeline.portable_beam --port P``: the job service, until killed."""
    import argparse
    import logging
    from apache_beam.runners.portability import local_job_service
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    servicer = local_job_service.LocalJobServicer(beam_job_type=_parallel_beam_job())
    port = servicer.start_grpc_server(args.port)
    logging.info("job service listening on port %d", port)
    try:
        while True:
            time.sleep(3600)
    finally:
        servicer.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log_path: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise RuntimeError(f"{process.args[2]} exited with {process.returncode}:\n{f.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{process.args[2]} did not listen on port {port} within {timeout:.0f}s (log: {log_path})")


class LocalPortableCluster:
    """Starts a job service and a worker pool as separate processes; ``beam_args()`` points Beam at them."""

    def __init__(self, workers: int = 2, log_dir: Optional[str] = None, start_timeout: float = 120.0):
        self.workers = workers
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="beam-cluster-")
        self._timeout = start_timeout
        self._processes: List[subprocess.Popen] = []
        self.job_port = self.pool_port = 0

    def _start(self, module: str, args: List[str], log_name: str) -> subprocess.Popen:
        env = dict(os.environ)
        # The pool starts SDK workers with "python" from PATH: make that this interpreter (and its packages).
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("TF_USE_LEGACY_KERAS", "1")
        log = open(os.path.join(self.log_dir, log_name), "w")
        process = subprocess.Popen([sys.executable, "-m", module] + args, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        log.close()
        self._processes.append(process)
        return process

    def __enter__(self) -> "LocalPortableCluster":
        os.makedirs(self.log_dir, exist_ok=True)
        self.job_port, self.pool_port = _free_port(), _free_port()
        try:
            job = self._start("ondevice_rec.pipeline.portable_beam", ["--port", str(self.job_port)],
                              "job_service.log")
            pool = self._start("apache_beam.runners.worker.worker_pool_main",
                               ["--service_port", str(self.pool_port)], "worker_pool.log")
            _wait_for_port(self.job_port, job, os.path.join(self.log_dir, "job_service.log"), self._timeout)
            _wait_for_port(self.pool_port, pool, os.path.join(self.log_dir, "worker_pool.log"), self._timeout)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def beam_args(self) -> List[str]:
        return ["--runner=PortableRunner", f"--job_endpoint=localhost:{self.job_port}",
                "--environment_type=EXTERNAL", f"--environment_config=localhost:{self.pool_port}",
                f"--direct_num_workers={self.workers}"]

    def worker_starts(self) -> int:
        """How many SDK worker processes the pool has started so far (from its log)."""
        with open(os.path.join(self.log_dir, "worker_pool.log"), errors="replace") as f:
            return len(re.findall(r"Starting worker with command", f.read()))

    def __exit__(self, *exc) -> None:
        for process in self._processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 15)  # the pool's SDK workers share its process group
                except ProcessLookupError:
                    pass
        for process in self._processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self._processes.clear()


if __name__ == "__main__":
    main()
