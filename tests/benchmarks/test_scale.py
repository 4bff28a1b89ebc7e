"""The scale benchmark (benchmarks/scale.py) on a small log: every data stage measured, the figures plausible."""

import json
import os

import pytest

from ondevice_rec import cli
from ondevice_rec.benchmarks import scale
from ondevice_rec.pipeline.nodes import Nodes


def test_sizes_parse_and_bad_ones_are_refused():
    assert [scale.parse_size(t) for t in ("25M", "500k", "20000", "1.5M")] == [25_000_000, 500_000, 20_000,
                                                                              1_500_000]
    for bad in ("lots", "10"):
        with pytest.raises(ValueError, match="a size"):
            scale.parse_size(bad)
    assert cli.main(["benchmark", "scale", "--sizes", "1M,lots"]) == cli.EXIT_BAD_INPUT
    assert cli.main(["benchmark", "scale", "--sizes", "1K", "--engines", "spark"]) == cli.EXIT_BAD_INPUT


def test_the_monitor_sees_the_cpu_and_memory_of_a_child_process():
    import subprocess
    import sys
    with scale.ProcessTreeMonitor(interval=0.1) as monitor:
        subprocess.run([sys.executable, "-c", "x = bytearray(300_000_000); import time\n"
                        "t = time.time()\nwhile time.time() - t < 1.0: pass"], check=True)
    used = monitor.window(monitor.samples[0][0], monitor.samples[-1][0])
    assert used["cpu_seconds"] > 0.5
    assert used["peak_rss_bytes"] > 300_000_000


@pytest.mark.slow
def test_scale_benchmark_measures_every_data_stage(tmp_path, capfd):
    out = str(tmp_path / "scale.json")
    assert cli.main(["benchmark", "scale", "--sizes", "20K", "--work-dir", str(tmp_path / "work"),
                     "--output", out]) == cli.EXIT_OK
    with open(out) as f:
        result = json.load(f)
    direct = result["sizes"]["20000"]["engines"]["direct"]
    assert 18_000 <= direct["events"] <= 21_000
    for stage in (Nodes.EXAMPLE_GEN, Nodes.STATISTICS_GEN, Nodes.WINDOWING, Nodes.TRANSFORM):
        figures = direct["stages"][stage]
        assert figures["seconds"] > 0 and figures["cpu_us_per_event"] > 0, (stage, figures)
        assert 0.2 < figures["peak_rss_gb"] < 20, (stage, figures)
    assert direct["cpu_us_per_event"] >= max(s["cpu_us_per_event"] for s in direct["stages"].values())
    printed = capfd.readouterr().out
    assert "20,000 events" in printed and "EventExampleGen" in printed and os.path.exists(out)
