"""A local portable Beam engine in separate processes: Beam's job service plus an external SDK worker pool.

This is the architecture Flink, Spark and Dataflow use for Python pipelines (a job server receives the portable
pipeline; SDK harness processes execute the Python stages over the Fn API, gRPC), with Beam's own Python job
service (``local_job_service_main``) as the engine and ``worker_pool_main`` starting the SDK worker processes.
It needs no download, so it runs offline and in CI. The pipeline's Beam stages get it through their usual
``beam_pipeline_args``:

    --runner=PortableRunner --job_endpoint=localhost:JOB_PORT
    --environment_type=EXTERNAL --environment_config=localhost:POOL_PORT

On a real cluster only these arguments change (README: Dataflow, Flink, Spark). Measured limit: Beam 2.59's
local job service asks the pool for one SDK worker process per job (``direct_num_workers`` is not honoured
there), so this shows the stages running out of process over the Fn API, not parallel speed-up.
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

    def __init__(self, log_dir: Optional[str] = None, start_timeout: float = 120.0):
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
            job = self._start("apache_beam.runners.portability.local_job_service_main",
                              ["--port", str(self.job_port)], "job_service.log")
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
                "--environment_type=EXTERNAL", f"--environment_config=localhost:{self.pool_port}"]

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
