"""Apache Flink as the engine of the pipeline's Beam stages: the engine's files, a local standalone cluster, and the
Beam arguments that send a stage to any Flink cluster.

What is served where (checked 2026-12-05, docs/flink.md): Beam 2.59's Flink runner reaches this
project from Maven Central only as ``beam-runners-flink-1.16`` (no ``-job-server`` shaded jar, no 1.17/1.18 runner),
and its ``beam-runners-java-job-service`` dependency only at 2.57.0; Flink 1.16.3 from PyPI (``lib/ opt/ plugins/``
in the ``apache-flink-libraries`` sdist, ``bin/ conf/`` in the ``apache-flink`` cp39 wheel, whose files are unpacked
and never installed: it pins apache-beam<2.49). ``install`` assembles both into a cache folder outside git:

    <cache>/flink-<FLINK_VERSION>/                  FLINK_HOME; lib/beam/ holds Beam's runner jars (see below)
    <cache>/beam-flink-job-server-<BEAM_VERSION>/   lib/*.jar and job-server.jar, a manifest-only jar naming them

The job server is Beam's own ``FlinkJobServerDriver`` (the manifest jar): ``stage_session`` starts one for a whole
run and hands every stage its address (``--job_endpoint``); without one, Beam's ``FlinkRunner`` starts it itself
from ``--flink_job_server_jar`` (the Kubeflow steps: one stage per container). The Python stages run in SDK
worker processes that each TaskManager starts itself (``--environment_type=PROCESS``, the command
``ondevice-rec-beam-worker``: ``pipeline/beam_worker.py``), so no Docker and no shared worker pool: two
TaskManagers on one host handing one EXTERNAL pool the same worker ids killed each other's workers (measured: a
job hung on "Still waiting for startup of environment").

Beam's jars sit in the cluster's ``lib/beam`` (parent-first class loading) because Beam keeps a stage's SDK
workers for the next stage of a job only when its classes come from Flink's parent class loader; with them only
in the job's jars, every task started two new Python workers (76 starts for a 1K-event pipeline).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from typing import Dict, Iterator, List, Optional, Tuple

FLINK_VERSION = "1.16.3"
BEAM_VERSION = "2.59.0"  # the Python SDK's version (constraints.txt); the runner jar must match it
FLINK_RUNNER_ARTIFACT = f"org.apache.beam:beam-runners-flink-1.16:{BEAM_VERSION}"
# beam-runners-java-job-service 2.59.0 is not on the Maven mirror this project is built with; 2.57.0 is, and
# the 2.59 runner runs with it (the CI test runs the whole pipeline through it).
JOB_SERVICE_ARTIFACT = "org.apache.beam:beam-runners-java-job-service:2.57.0"
JOB_SERVER_MAIN_CLASS = "org.apache.beam.runners.flink.FlinkJobServerDriver"
JAVA_MAJOR = 17  # Flink 1.16 on Java 17 with the --add-opens below (Flink 1.18's list); checked by install
ADD_OPENS = ("java.base/java.lang", "java.base/java.net", "java.base/java.io", "java.base/java.nio",
             "java.base/sun.nio.ch", "java.base/java.lang.reflect", "java.base/java.text", "java.base/java.time",
             "java.base/java.util", "java.base/java.util.concurrent", "java.base/java.util.concurrent.atomic",
             "java.base/java.util.concurrent.locks")
ADD_EXPORTS = ("java.base/sun.net.util", "java.rmi/sun.rmi.registry", "java.security.jgss/sun.security.krb5")
DEFAULT_REST_PORT = 8081
DEFAULT_TASKMANAGERS = 2
DEFAULT_SLOTS = 1
WORKER_COMMAND = "ondevice-rec-beam-worker"  # setup.py's console script: pipeline/beam_worker.py
# How long a TaskManager keeps a stage's SDK workers for the job's next stage (Beam's environment cache).
ENVIRONMENT_CACHE_MILLIS = 60000
_MARKER = "ondevice-rec-engine.json"
# Placement: where a stage runs and how wide, not what it computes. ``stage_session`` hands these to the stages as
# TFX placeholders of environment variables, because TFX's cache key hashes each stage's executor spec, Beam
# arguments included: with plain values, a re-run after a TaskManager was replaced (measured: the dead one's slot
# still counted, --parallelism=3) or on a resized cluster, or with the run's own job server port, executed every
# finished stage again.
PLACEMENT_ENV = {"--flink_master": "ONDEVICE_REC_FLINK_MASTER", "--parallelism": "ONDEVICE_REC_FLINK_PARALLELISM",
                 "--job_endpoint": "ONDEVICE_REC_JOB_ENDPOINT"}
# A TaskManager whose last heartbeat is this much older than the freshest one's is taken for lost (Flink keeps a
# killed one listed until its heartbeat times out: heartbeat.timeout, 50 s by default).
_LOST_TASKMANAGER_SECONDS = 25
JOB_NAME_PREFIX = "ondevice-rec-"
# Cluster memory: 1 GB JobManager, 4 GB TaskManagers. The network memory is raised from Flink's 10% (measured:
# "Insufficient number of network buffers: required 512, but only 398 available" in EventExampleGen) and a
# sort-merge shuffle partition asks for 64 buffers instead of 512 (Transform's many outputs still failed at 384 MB).
_CLUSTER_CONF = {
    "jobmanager.memory.process.size": "1024m",
    # 4 GB TaskManagers with a fifth of Flink's memory managed (sorting; Flink's default: 40 %): with 3 GB and the
    # default, a task's heap was ~0.5 GB and a 5M-event EventExampleGen died of "OutOfMemoryError: Java heap
    # space" in Beam's gRPC data plane (docs/results.md, the scale benchmark).
    "taskmanager.memory.process.size": "4096m",
    "taskmanager.memory.managed.fraction": "0.2",
    # An error thrown outside a task (that OOM hit a gRPC thread) ends the TaskManager, so the job fails and says
    # so; Flink's default only logs it, and the job then waited forever for the lost data.
    "cluster.uncaught-exception-handling": "FAIL",
    # Beam's gRPC data plane buffers off the heap: with Flink's default (none for tasks) ML-1M's EventExampleGen
    # failed with "OutOfMemoryError: Direct buffer memory".
    "taskmanager.memory.task.off-heap.size": "512m",
    "taskmanager.memory.network.min": "384m",
    "taskmanager.memory.network.max": "384m",
    "taskmanager.network.sort-shuffle.min-buffers": "64",
    "classloader.resolve-order": "parent-first",
    "jobmanager.execution.failover-strategy": "region",
    # Restarts rescue a task that failed alone (a crashed SDK worker). A lost TaskManager is not rescued: Flink
    # 1.16 counts one failure per task running on it (measured: 11 at once in Transform, which exhausted even
    # "10 failures a minute"), so the stage fails and the run says so; a budget that large would retry a real bug
    # for minutes. The run's re-run resumes from the TFX cache (PLACEMENT_ENV; tests/pipeline/test_flink.py).
    "restart-strategy": "fixed-delay",
    "restart-strategy.fixed-delay.attempts": "3",
    "restart-strategy.fixed-delay.delay": "5 s",
    "slot.request.timeout": "60000",
}


class EngineError(RuntimeError):
    """The engine cannot be prepared or reached; the message says what to do."""


def cache_dir() -> str:
    """Where the engine's files go: the project's cache ($ONDEVICE_REC_CACHE, else ~/.cache/ondevice-rec)."""
    from ondevice_rec.data.download import default_cache_dir
    return default_cache_dir()


def flink_home(cache: Optional[str] = None) -> str:
    return os.path.join(cache or cache_dir(), f"flink-{FLINK_VERSION}")


def job_server_jar(cache: Optional[str] = None) -> str:
    return os.path.join(cache or cache_dir(), f"beam-flink-job-server-{BEAM_VERSION}", "job-server.jar")


def worker_command() -> str:
    """The SDK worker boot command of this interpreter's environment (TaskManagers run it on their host)."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), WORKER_COMMAND)


def java_home() -> str:
    """A JDK of ``JAVA_MAJOR``: $JAVA_HOME if it is one, else the ``java`` on PATH."""
    candidates = [os.environ.get("JAVA_HOME", "")]
    java = shutil.which("java")
    if java:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(java))))
    candidates += sorted(p for p in (os.path.join("/usr/lib/jvm", d) for d in
                                     (os.listdir("/usr/lib/jvm") if os.path.isdir("/usr/lib/jvm") else [])))
    seen = []
    for home in candidates:
        binary = os.path.join(home, "bin", "java") if home else ""
        if not binary or not os.path.exists(binary) or home in seen:
            continue
        seen.append(home)
        out = subprocess.run([binary, "-version"], capture_output=True, text=True).stderr
        match = re.search(r'version "(\d+)', out)
        if match and int(match.group(1)) == JAVA_MAJOR:
            return home
    raise EngineError(f"Flink {FLINK_VERSION} here needs a Java {JAVA_MAJOR} JDK; none found "
                      f"(looked at $JAVA_HOME, java on PATH, /usr/lib/jvm: {', '.join(seen) or 'nothing'}). "
                      f"Install one (Debian: apt-get install openjdk-{JAVA_MAJOR}-jdk-headless) or set JAVA_HOME.")


def is_installed(cache: Optional[str] = None) -> bool:
    return os.path.exists(os.path.join(flink_home(cache), _MARKER)) and os.path.exists(job_server_jar(cache))


def _run(command: List[str], what: str, **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise EngineError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
                          f"{(result.stdout + result.stderr)[-3000:]}")


def _pip_download(requirement: str, dest: str, extra: List[str]) -> str:
    before = set(os.listdir(dest))
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
          "-d", dest, requirement] + extra, f"downloading {requirement} from PyPI")
    new = sorted(set(os.listdir(dest)) - before) or sorted(f for f in os.listdir(dest)
                                                           if f.lower().replace("_", "-").startswith(
                                                               requirement.split("==")[0]))
    return os.path.join(dest, new[0])


def _assemble_flink(home: str, downloads: str) -> None:
    """FLINK_HOME from the two PyPI files: scripts and conf from the wheel, jars from the sdist."""
    sdist = _pip_download(f"apache-flink-libraries=={FLINK_VERSION}", downloads, ["--no-binary", ":all:"])
    wheel = _pip_download(f"apache-flink=={FLINK_VERSION}", downloads,
                          ["--only-binary", ":all:", "--python-version", "3.9", "--platform", "manylinux1_x86_64"])
    os.makedirs(os.path.join(home, "lib"), exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            match = re.match(r"pyflink/(bin|conf)/(.+)", name)
            if match and not name.endswith("/"):
                target = os.path.join(home, match.group(1), match.group(2))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if match.group(1) == "bin":
                    os.chmod(target, 0o755)
    # Only what a cluster needs: flink-dist, logging, ZooKeeper's client, the plugins; not the Table/SQL jars.
    keep = re.compile(r"deps/(bin/bash-java-utils\.jar|lib/(flink-dist|log4j|flink-shaded-zookeeper)[^/]*\.jar"
                      r"|plugins/.+)$")
    with tarfile.open(sdist) as t:
        for member in t.getmembers():
            match = keep.search(member.name)
            if match and member.isfile():
                target = os.path.join(home, match.group(1))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with t.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    for required in ("bin/jobmanager.sh", "bin/taskmanager.sh", "bin/bash-java-utils.jar",
                     f"lib/flink-dist-{FLINK_VERSION}.jar"):
        if not os.path.exists(os.path.join(home, required)):
            raise EngineError(f"{required} missing from the Flink {FLINK_VERSION} files on PyPI")


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ondevice-rec</groupId><artifactId>beam-flink-job-server</artifactId><version>1</version>
  <dependencyManagement><dependencies>{managed}</dependencies></dependencyManagement>
  <dependencies>{deps}</dependencies>
</project>
"""


def _dependency(coordinates: str) -> str:
    group, artifact, version = coordinates.split(":")
    return (f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>")


def _manifest_jar(path: str, main_class: str, class_path: List[str]) -> None:
    """A jar holding only a manifest: ``java -jar`` runs ``main_class`` on ``class_path`` with ``ADD_OPENS``."""
    def folded(line: str) -> str:  # manifest lines are at most 72 bytes; continuations start with a space
        parts, line = [line[:70]], line[70:]
        while line:
            parts, line = parts + [" " + line[:69]], line[69:]
        return "\r\n".join(parts)
    lines = ["Manifest-Version: 1.0", f"Main-Class: {main_class}", "Add-Opens: " + " ".join(ADD_OPENS),
             "Class-Path: " + " ".join(class_path)]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "\r\n".join(folded(line) for line in lines) + "\r\n\r\n")


def _assemble_job_server(folder: str, home: str) -> None:
    """Beam's Flink runner and its dependencies from Maven Central; Beam's own jars also into the cluster's lib."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise EngineError("Maven (mvn) is needed once to fetch Beam's Flink runner from Maven Central "
                          "(Debian: apt-get install maven)")
    lib = os.path.join(folder, "lib")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "pom.xml"), "w") as f:
        f.write(_POM.format(managed=_dependency(JOB_SERVICE_ARTIFACT), deps=_dependency(FLINK_RUNNER_ARTIFACT)))
    _run([mvn, "--batch-mode", "--quiet", "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
          "-DincludeScope=runtime"], f"fetching {FLINK_RUNNER_ARTIFACT} with Maven", cwd=folder)
    jars = sorted(j for j in os.listdir(lib) if j.endswith(".jar"))
    _manifest_jar(os.path.join(folder, "job-server.jar"), JOB_SERVER_MAIN_CLASS, [f"lib/{j}" for j in jars])
    beam_lib = os.path.join(home, "lib", "beam")
    os.makedirs(beam_lib, exist_ok=True)
    for jar in jars:  # Flink's own classes come from flink-dist; the runner's copies of them stay out
        if not jar.startswith("flink-"):
            shutil.copy2(os.path.join(lib, jar), beam_lib)


def install(cache: Optional[str] = None, log=print) -> str:
    """Prepares the engine once (PyPI and Maven Central); later calls only check it, offline. Returns FLINK_HOME."""
    cache = cache or cache_dir()
    home = flink_home(cache)
    java = java_home()
    if is_installed(cache):
        log(f"Flink {FLINK_VERSION} and Beam's Flink job server ready in {cache} (Java {JAVA_MAJOR}: {java})")
        return home
    log(f"Preparing Flink {FLINK_VERSION} (PyPI) and Beam {BEAM_VERSION}'s Flink job server (Maven Central) "
        f"in {cache} ...")
    staging = tempfile.mkdtemp(prefix="engine-", dir=_ensure(cache))
    try:
        new_home = os.path.join(staging, os.path.basename(home))
        new_server = os.path.join(staging, os.path.basename(os.path.dirname(job_server_jar(cache))))
        downloads = _ensure(os.path.join(staging, "downloads"))
        _assemble_flink(new_home, downloads)
        _assemble_job_server(new_server, new_home)
        with open(os.path.join(new_home, _MARKER), "w") as f:
            json.dump({"flink": FLINK_VERSION, "beam": BEAM_VERSION, "runner": FLINK_RUNNER_ARTIFACT,
                       "job_service": JOB_SERVICE_ARTIFACT}, f)
        for new, final in ((new_server, os.path.dirname(job_server_jar(cache))), (new_home, home)):
            shutil.rmtree(final, ignore_errors=True)
            os.replace(new, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"Flink {FLINK_VERSION} ready: {home}")
    return home


def _ensure(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest_get(master: str, path: str, timeout: float = 5.0):
    """GET from a JobManager's REST API (``master`` is HOST:PORT or a URL)."""
    url = (master if re.match(r"https?://", master) else "http://" + master).rstrip("/") + path
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def cluster_overview(master: str) -> Dict:
    """The JobManager's /overview, or EngineError saying that nothing answers at ``master``."""
    try:
        return rest_get(master, "/overview")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise EngineError(f"no Flink cluster answers at {master} ({e}); start one with "
                          f"'ondevice-rec flink up' or pass the address of yours") from None


def live_slots(master: str) -> int:
    """The task slots of the TaskManagers the cluster still hears from (``_LOST_TASKMANAGER_SECONDS``)."""
    taskmanagers = rest_get(master, "/taskmanagers").get("taskmanagers", [])
    heartbeats = [int(tm.get("timeSinceLastHeartbeat") or 0) for tm in taskmanagers] or [0]  # epoch ms of the last
    return sum(int(tm.get("slotsNumber") or 0) for tm, beat in zip(taskmanagers, heartbeats)
               if max(heartbeats) - beat <= _LOST_TASKMANAGER_SECONDS * 1000)


def beam_args(master: str, parallelism: Optional[int] = None, cache: Optional[str] = None,
              worker: Optional[str] = None, query: bool = True) -> List[str]:
    """The Beam arguments that run a stage on the Flink cluster at ``master``.

    ``query``: ask the cluster now (it must answer) and run one task per task slot; without it (a spec compiled
    for another machine) ``cache`` and ``worker`` are the paths where the stages run, and the parallelism is the
    cluster's default unless given."""
    if query:
        cluster_overview(master)
        slots = live_slots(master)
        if parallelism is None and slots < 1:
            raise EngineError(f"the Flink cluster at {master} has no TaskManager (0 task slots)")
        parallelism = parallelism or slots
        jar = job_server_jar(cache)
        if not os.path.exists(jar):
            raise EngineError(f"Beam's Flink job server is not prepared ({jar} missing): run ./setup.sh "
                              "or 'ondevice-rec flink install'")
    args = ["--runner=FlinkRunner", f"--flink_master={master}", f"--flink_job_server_jar={job_server_jar(cache)}",
            "--environment_type=PROCESS", "--environment_config=" + json.dumps({"command": worker or worker_command()}),
            f"--environment_cache_millis={ENVIRONMENT_CACHE_MILLIS}"]
    return args + ([f"--parallelism={parallelism}"] if parallelism else [])


def job_name(component_id: str) -> str:
    """The Flink job name of a pipeline component's Beam stage."""
    return JOB_NAME_PREFIX + re.sub(r"[^a-z0-9]+", "-", component_id.lower()).strip("-")


def component_of(name: str) -> str:
    """The component id part of a ``job_name`` (lower case), or "" for another job."""
    return name[len(JOB_NAME_PREFIX):] if name.startswith(JOB_NAME_PREFIX) else ""


def engine_description(beam_pipeline_args: List[str]) -> str:
    """Where the Beam stages ran, for messages: "Flink at HOST:PORT (web UI ...)", else the Beam runner."""
    master = flink_master_of(beam_pipeline_args)
    if master:
        return f"Beam stages on Flink at {master}, web UI {master if '://' in master else 'http://' + master}"
    runners = [a.split("=", 1)[1] for a in beam_pipeline_args if a.startswith("--runner=")]
    return f"Beam stages on {runners[-1] if runners else 'DirectRunner'}"


def flink_master_of(beam_pipeline_args: List[str]) -> Optional[str]:
    """The ``--flink_master`` among Beam arguments (None when the stages do not run on Flink)."""
    for arg in beam_pipeline_args:
        if arg.startswith("--flink_master="):
            return arg.split("=", 1)[1]
    return None


class JobServer:
    """Beam's Flink job server (``FlinkJobServerDriver``) as one JVM for a whole run, stopped with it. (Beam's
    FlinkRunner started one per stage and kept each until the Python process exited: six JVMs for a run, left
    running when the run was killed.)"""

    def __init__(self, master: str, jar: str):
        self.master, self.jar = master, jar
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self.folder = ""

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"

    def start(self, timeout: float = 180.0) -> "JobServer":
        if not os.path.exists(self.jar):
            raise EngineError(f"Beam's Flink job server is not prepared ({self.jar} missing): run ./setup.sh "
                              "or 'ondevice-rec flink install'")
        self.folder = tempfile.mkdtemp(prefix="ondevice-rec-job-server-")
        self.port = free_port()
        log_path = os.path.join(self.folder, "job-server.log")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
                [os.path.join(java_home(), "bin", "java"), "-jar", self.jar,
                 "--flink-master", _with_scheme(self.master), "--artifacts-dir", os.path.join(self.folder, "artifacts"),
                 "--job-port", str(self.port), "--artifact-port", "0", "--expansion-port", "0"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_end_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                with open(log_path, errors="replace") as f:
                    tail = f.read()[-2000:]
                self.stop()
                raise EngineError(f"Beam's Flink job server exited at start (code {self.process.returncode}): {tail}")
            with socket.socket() as probe:
                if probe.connect_ex(("localhost", self.port)) == 0:
                    return self
            time.sleep(0.3)
        self.stop()
        raise EngineError(f"Beam's Flink job server did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


def _end_with_parent() -> None:
    """In the job server's process before it starts: Linux sends it SIGTERM when the run's process ends, however
    it ends (a run killed with SIGTERM or SIGKILL left its job server running)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _with_scheme(master: str) -> str:
    return master if "://" in master else "http://" + master


def placed_args(beam_pipeline_args: List[str], job_endpoint: str) -> Tuple[list, Dict[str, str]]:
    """Flink stages' Beam arguments for a run whose job server listens at ``job_endpoint``: the placement arguments
    (``PLACEMENT_ENV``) as TFX placeholders of environment variables, and the values those variables must hold."""
    from tfx.dsl.placeholder import placeholder as ph
    values = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in beam_pipeline_args
              if a.split("=", 1)[0] in PLACEMENT_ENV}
    values.update({"--flink_master": _with_scheme(values["--flink_master"]), "--job_endpoint": job_endpoint})
    kept = [a for a in beam_pipeline_args if a.split("=", 1)[0] not in PLACEMENT_ENV
            and not a.startswith("--flink_job_server_jar=")]  # the run's job server replaces Beam's own
    return (kept + [flag + "=" + ph.environment_variable(PLACEMENT_ENV[flag]) for flag in PLACEMENT_ENV
                    if flag in values],
            {PLACEMENT_ENV[flag]: value for flag, value in values.items()})


@contextlib.contextmanager
def stage_session(beam_pipeline_args: List[str]) -> Iterator[list]:
    """The Beam arguments of a run's stages, valid while the run lasts. Off Flink: the arguments as they are. On
    Flink: one job server for the run (``JobServer``) and ``placed_args``, whose environment this sets meanwhile."""
    master = flink_master_of(beam_pipeline_args)
    if not master:
        yield list(beam_pipeline_args)
        return
    jars = [a.split("=", 1)[1] for a in beam_pipeline_args if a.startswith("--flink_job_server_jar=")]
    server = JobServer(master, jars[-1] if jars else job_server_jar()).start()
    args, environment = placed_args(beam_pipeline_args, server.endpoint)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield args
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


class LocalFlinkCluster:
    """A standalone Flink cluster on this machine: a JobManager and N TaskManagers, each its own JVM.

    ``state_dir`` holds its configuration, logs and pid files (the engine's files stay read-only), so two
    clusters with different ``state_dir`` and ports can run side by side (the tests do).
    """

    def __init__(self, state_dir: str, taskmanagers: int = DEFAULT_TASKMANAGERS, slots: int = DEFAULT_SLOTS,
                 rest_port: int = DEFAULT_REST_PORT, cache: Optional[str] = None):
        self.state_dir = os.path.abspath(state_dir)
        self.taskmanagers, self.slots, self.rest_port = taskmanagers, slots, rest_port
        self.home = flink_home(cache)

    @property
    def master(self) -> str:
        return f"localhost:{self.rest_port}"

    @property
    def web_ui(self) -> str:
        return f"http://{self.master}"

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(JAVA_HOME=java_home(), FLINK_HOME=self.home, FLINK_CONF_DIR=os.path.join(self.state_dir, "conf"),
                   FLINK_LOG_DIR=os.path.join(self.state_dir, "log"), FLINK_PID_DIR=self.state_dir)
        # The TaskManagers start the SDK workers: the worker command's interpreter and TensorFlow's Keras 2.
        env["PATH"] = os.path.dirname(os.path.abspath(sys.executable)) + os.pathsep + env.get("PATH", "")
        env.setdefault("TF_USE_LEGACY_KERAS", "1")
        return env

    def _write_conf(self) -> None:
        conf_dir = _ensure(os.path.join(self.state_dir, "conf"))
        _ensure(os.path.join(self.state_dir, "log"))
        for name in os.listdir(os.path.join(self.home, "conf")):
            if name.startswith("log4j"):
                shutil.copy2(os.path.join(self.home, "conf", name), conf_dir)
        settings = dict(_CLUSTER_CONF)
        settings.update({
            "jobmanager.rpc.address": "localhost", "jobmanager.bind-host": "localhost",
            "jobmanager.rpc.port": str(free_port()), "blob.server.port": "0",
            "taskmanager.bind-host": "localhost", "taskmanager.host": "localhost",
            "rest.address": "localhost", "rest.bind-address": "localhost", "rest.port": str(self.rest_port),
            "taskmanager.numberOfTaskSlots": str(self.slots), "parallelism.default": str(self.slots),
            "io.tmp.dirs": _ensure(os.path.join(self.state_dir, "tmp")),
            "env.java.opts": " ".join([f"--add-opens={m}=ALL-UNNAMED" for m in ADD_OPENS]
                                      + [f"--add-exports={m}=ALL-UNNAMED" for m in ADD_EXPORTS]),
        })
        with open(os.path.join(conf_dir, "flink-conf.yaml"), "w") as f:
            f.write("# written by ondevice-rec (pipeline/flink.py)\n")
            f.writelines(f"{key}: {value}\n" for key, value in settings.items())

    def _script(self, *args: str) -> None:
        _run([os.path.join(self.home, "bin", args[0])] + list(args[1:]), f"Flink's {args[0]} {' '.join(args[1:])}",
             env=self._env())

    def is_running(self) -> bool:
        try:
            rest_get(self.master, "/overview", timeout=2)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, timeout: float = 120.0) -> Dict:
        """Starts the JobManager and TaskManagers; returns /overview once every TaskManager registered."""
        if not is_installed(os.path.dirname(self.home)):
            raise EngineError(f"Flink {FLINK_VERSION} is not prepared in {self.home}: run ./setup.sh "
                              "or 'ondevice-rec flink install'")
        if self.is_running():
            raise EngineError(f"something already answers at {self.master}: 'ondevice-rec flink down' stops a "
                              "cluster of this project; or choose --rest-port")
        self._write_conf()
        self._script("jobmanager.sh", "start")
        for _ in range(self.taskmanagers):
            self._script("taskmanager.sh", "start")
        deadline = time.time() + timeout
        overview = {}
        while time.time() < deadline:
            try:
                overview = rest_get(self.master, "/overview", timeout=2)
                if overview.get("taskmanagers") == self.taskmanagers:
                    return overview
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(1)
        self.stop()
        raise EngineError(f"the cluster did not come up within {timeout:.0f}s ({overview or 'no REST answer'}); "
                          f"logs: {os.path.join(self.state_dir, 'log')}")

    def stop(self) -> None:
        """Stops every TaskManager and the JobManager started with this ``state_dir``."""
        if not os.path.isdir(os.path.join(self.state_dir, "conf")):
            return
        self._script("taskmanager.sh", "stop-all")
        self._script("jobmanager.sh", "stop-all")

    def pids(self) -> List[int]:
        """The JobManager's and the TaskManagers' process ids (Flink's pid files in ``state_dir``)."""
        return [pid for path in glob.glob(os.path.join(self.state_dir, "flink-*.pid")) for pid in _pids(path)]

    def taskmanager_pids(self) -> List[int]:
        """The running TaskManagers' process ids (Flink's pid file: flink-$USER-taskexecutor.pid)."""
        return [pid for path in glob.glob(os.path.join(self.state_dir, "flink-*-taskexecutor.pid"))
                for pid in _pids(path)]

    def __enter__(self) -> "LocalFlinkCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _pids(path: str) -> List[int]:
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split() if line.strip().isdigit()]
    except FileNotFoundError:
        return []


def jobs(master: str) -> List[Dict]:
    """Every job the cluster knows, oldest first: name, state, seconds, and the TaskManagers that ran its subtasks
    (from the REST API: /jobs/overview, /jobs/ID, /jobs/ID/vertices/VID/taskmanagers)."""
    jobs = []
    for job in sorted(rest_get(master, "/jobs/overview")["jobs"], key=lambda j: j["start-time"]):
        detail = rest_get(master, f"/jobs/{job['jid']}")
        taskmanagers = set()
        for vertex in detail.get("vertices", []):
            per_tm = rest_get(master, f"/jobs/{job['jid']}/vertices/{vertex['id']}/taskmanagers")
            taskmanagers.update(tm.get("taskmanager-id") or tm.get("host", "") for tm in per_tm["taskmanagers"])
        jobs.append({"name": job["name"], "state": job["state"], "seconds": job["duration"] / 1000.0,
                     "tasks": job["tasks"]["total"], "taskmanagers": sorted(taskmanagers)})
    return jobs
