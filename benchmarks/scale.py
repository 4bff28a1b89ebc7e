"""The pipeline's data stages at scale: synthetic logs in MovieLens-25M's shape (``synthetic.write_scale``) of
growing size, on the DirectRunner and on a local Flink cluster; per stage its wall seconds, CPU microseconds per
event and peak resident memory.

CPU and memory are sampled from ``/proc`` for the whole process tree that does the work (``ProcessTreeMonitor``):
this process and its children (the DirectRunner's workers, the Beam job server) and, on Flink, the cluster's
JobManager and TaskManagers with the SDK workers they start. A stage's CPU is the tree's CPU seconds between its
start and its end as the pipeline's progress hook reports them; its memory, the highest sum of resident sets
sampled meanwhile.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import platform
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ondevice_rec.benchmarks.data import temporary_work_dir
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline import flink, mlmd
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes
from ondevice_rec.pipeline.progress_runner import progress_log
from ondevice_rec.pipeline.runner import run_data_stages

SIZES = (1_000_000, 5_000_000, 25_000_000)
DIRECT, FLINK = "direct", "flink"
ENGINES = (DIRECT, FLINK)
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def parse_size(text: str) -> int:
    """``25M``, ``500K`` or a plain number of events."""
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    try:
        value = int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        raise ValueError(f"a size is a number of events like 1M, 500K or 20000, got {text!r}") from None
    if value < 1_000:
        raise ValueError(f"a size must be at least 1,000 events, got {text!r}")
    return value


def _processes() -> Dict[int, Tuple[int, float, int]]:
    """``{pid: (parent pid, CPU seconds, resident bytes)}`` of every process /proc shows."""
    found = {}
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (command) "
        # state ppid ... utime (field 14) stime (15) ... rss (24): offsets 0-based after the command
        found[int(stat_path.split("/")[2])] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS,
                                               int(fields[21]) * _PAGE)
    return found


class ProcessTreeMonitor:
    """Samples the CPU seconds and resident memory of the processes descending from ``roots`` (pids; this
    process by default) every ``interval`` seconds. A process that ended keeps the CPU it had at its last sample
    (one shorter than an interval is missed)."""

    def __init__(self, roots: Iterable[int] = (), interval: float = 0.5):
        self.roots = set(roots) or {os.getpid()}
        self.interval = interval
        self.samples: List[Tuple[float, float, int]] = []  # (time, CPU seconds of the tree, resident bytes)
        self._cpu: Dict[int, float] = {}  # pid -> CPU seconds since the monitor started, at its last sample
        self._base: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add_roots(self, pids: Iterable[int]) -> None:
        self.roots.update(pids)

    def sample(self) -> Tuple[float, float, int]:
        table = _processes()
        tree, frontier = set(), [p for p in self.roots if p in table]
        children: Dict[int, List[int]] = {}
        for pid, (parent, _, _) in table.items():
            children.setdefault(parent, []).append(pid)
        while frontier:
            pid = frontier.pop()
            if pid not in tree:
                tree.add(pid)
                frontier.extend(children.get(pid, ()))
        for pid in tree:
            self._base.setdefault(pid, table[pid][1] if not self.samples else 0.0)
            self._cpu[pid] = table[pid][1] - self._base[pid]
        point = (time.time(), sum(self._cpu.values()), sum(table[pid][2] for pid in tree))
        self.samples.append(point)
        return point

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "ProcessTreeMonitor":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def window(self, start: float, end: float) -> Dict[str, float]:
        """CPU seconds and peak resident bytes between two times (the samples nearest them)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        before = max((s for s in self.samples if s[0] <= start), default=self.samples[0], key=lambda s: s[0])
        after = min((s for s in self.samples if s[0] >= end), default=self.samples[-1], key=lambda s: s[0])
        return {"cpu_seconds": max(0.0, after[1] - before[1]),
                "peak_rss_bytes": max([s[2] for s in inside + [before, after]])}


class StageClock(logging.Handler):
    """The start and end times of each pipeline node, from the progress hook's records (``progress_runner``)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.starts: Dict[str, float] = {}
        self.ends: Dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.args:
            node = str(record.args[0])
            (self.starts if "started" in record.msg else self.ends)[node] = record.created


def measure_data_stages(config: PipelineConfig, extra_roots: Sequence[int] = ()) -> Dict:
    """Runs the data stages with the monitor and clock on; per stage: seconds (MLMD), CPU seconds, peak RSS."""
    clock, level = StageClock(), progress_log.level
    progress_log.addHandler(clock)
    progress_log.setLevel(logging.INFO)
    try:
        with ProcessTreeMonitor([os.getpid(), *extra_roots]) as monitor:
            start = time.time()
            run_data_stages(config)
            wall = time.time() - start
    finally:
        progress_log.removeHandler(clock)
        progress_log.setLevel(level)
    run_id = mlmd.run_ids(config.metadata_path)[-1]
    store = mlmd.Store(config.metadata_path)
    events = mlmd.artifact_properties(store.run_artifact(run_id, "Examples", Nodes.EXAMPLE_GEN)).get("events", 0)
    stages = {}
    for result in mlmd.node_results(config.metadata_path, run_id):
        if result.node_id not in clock.starts or result.node_id not in clock.ends:
            continue
        used = monitor.window(clock.starts[result.node_id], clock.ends[result.node_id])
        stages[result.node_id] = {
            "seconds": round(result.seconds, 1),
            "cpu_us_per_event": round(used["cpu_seconds"] / max(1, events) * 1e6, 1),
            "peak_rss_gb": round(used["peak_rss_bytes"] / 1e9, 2)}
    whole = monitor.window(monitor.samples[0][0], monitor.samples[-1][0])
    return {"events": int(events), "seconds": round(wall, 1), "stages": stages,
            "cpu_us_per_event": round(whole["cpu_seconds"] / max(1, events) * 1e6, 1),
            "peak_rss_gb": round(whole["peak_rss_bytes"] / 1e9, 2)}


@temporary_work_dir("scale-")
def run(sizes: Sequence[int] = SIZES, work_dir: str = "", engines: Sequence[str] = (DIRECT,), taskmanagers: int = 2,
        seed: int = 0, out_json: str = "") -> dict:
    """Every size on each of ``engines``: the DirectRunner, a new local Flink cluster of ``taskmanagers``
    TaskManagers. A size's log is generated once into ``work_dir`` (kept when the work folder is given)."""
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or not engines:
        raise ValueError(f"unknown engine {', '.join(unknown) or '(none)'}; choose among {', '.join(ENGINES)}")
    result = {"sizes": {}, "stages": list(Nodes.DATA_STAGES), "shape": "MovieLens-25M (data/synthetic.ScaleShape)",
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * _PAGE / 1e9, 1)}}
    for size in sizes:
        data_dir = os.path.join(work_dir, f"log-{size}")
        started = time.time()
        if not os.path.exists(os.path.join(data_dir, "movies.csv")):
            synthetic.write_scale(size, data_dir, seed=seed)
        entry = {"generated_seconds": round(time.time() - started, 1), "engines": {}}
        print(f"{size:,} events: log ready in {entry['generated_seconds']:.0f}s ({data_dir})", flush=True)
        if DIRECT in engines:
            config = PipelineConfig(data_dir=data_dir, output_dir=os.path.join(work_dir, f"{DIRECT}-{size}"))
            entry["engines"][DIRECT] = measure_data_stages(config)
        if FLINK in engines:
            name = f"flink-{taskmanagers}tm"
            with flink.LocalFlinkCluster(os.path.join(work_dir, f"cluster-{size}"), taskmanagers=taskmanagers,
                                         rest_port=flink.free_port()) as cluster:
                config = PipelineConfig(data_dir=data_dir, output_dir=os.path.join(work_dir, f"{name}-{size}"),
                                        beam_args=flink.beam_args(cluster.master))
                entry["engines"][name] = measure_data_stages(config, cluster.pids())
        result["sizes"][str(size)] = entry
        print(format_size(size, entry, result["stages"]), flush=True)
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def format_size(size: int, entry: dict, stages: Sequence[str]) -> str:
    engines = list(entry["engines"])
    read = ", ".join(f"{e}: {entry['engines'][e]['events']:,} read" for e in engines)
    lines = [f"  {size:,} events ({read}): seconds / CPU us per event / peak RSS GB",
             f"  {'stage':20s}" + "".join(f"{e:>26s}" for e in engines)]
    for stage in list(stages) + ["data stages"]:
        cells = []
        for e in engines:
            run_ = entry["engines"][e]
            s = run_ if stage == "data stages" else run_["stages"].get(stage)
            cells.append(f"{s['seconds']:8.1f} {s['cpu_us_per_event']:8.1f} {s['peak_rss_gb']:7.2f}" if s else "-")
        lines.append(f"  {stage:20s}" + "".join(f"{c:>26s}" for c in cells))
    return "\n".join(lines)
