"""Faults: a killed Trainer resumes from the cache; a publish that fails keeps the previous version serving."""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline import mlmd
from ondevice_rec.pipeline.config import PipelineConfig

UPSTREAM = {"EventExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "HistoryWindowing",
            "Transform"}


def _files(tag):
    return {publish.MODEL_FILE: tag.encode(), publish.METADATA_FILE: b"{}", publish.EVAL_FILE: b"{}"}


@pytest.mark.parametrize("failing, error", [
    ("rename", PermissionError(errno.EACCES, "Permission denied")),   # the version cannot be moved into place
    ("replace", OSError(errno.ENOSPC, "No space left on device")),     # latest cannot be switched
    ("symlink", PermissionError(errno.EACCES, "Permission denied")),   # the new link cannot be made
])
def test_a_failing_publish_keeps_the_previous_version_serving(tmp_path, monkeypatch, failing, error):
    serving = str(tmp_path / "serving")
    publish.publish(serving, _files("v1"), version="v1")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(publish.os, failing, fail)
    with pytest.raises(OSError):
        publish.publish(serving, _files("v2"), version="v2")
    monkeypatch.undo()
    assert publish.current_version(serving) == "v1"
    with open(os.path.join(serving, "latest", publish.MODEL_FILE), "rb") as f:
        assert f.read() == b"v1"
    assert not [n for n in os.listdir(serving) if n.startswith(".staging")]
    # The next publish works and cleans up whatever the failed one left.
    publish.publish(serving, _files("v3"), version="v3")
    assert publish.current_version(serving) == "v3"
    assert not [n for n in os.listdir(serving) if n.startswith(".")]


@pytest.mark.slow
def test_a_run_killed_during_training_resumes_from_the_cache_and_publishes_once(tmp_path):
    data = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=120, items=100, seed=9)),
                           str(tmp_path / "data"), "ml-100k")
    out = str(tmp_path / "out")
    args = ["run", "--data-dir", data, "--output-dir", out, "--epochs", "30", "--top-k", "20", "--batch-size", "64",
            "--learning-rate", "0.005"]
    process = subprocess.Popen([sys.executable, "-m", "ondevice_rec.cli"] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in process.stdout:  # the CLI's per-component progress
            if "Trainer" in line and "started" in line:
                break
        else:
            pytest.fail("the run ended before the Trainer started")
        time.sleep(5)  # inside model.fit
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    serving = os.path.join(out, "serving")
    assert not os.path.exists(serving) or not publish.list_versions(serving)  # nothing half-published
    config = PipelineConfig(data_dir=data, output_dir=out)
    killed_runs = mlmd.run_ids(config.metadata_path)

    from ondevice_rec import cli
    assert cli.main(args) == 0
    rerun = mlmd.run_ids(config.metadata_path)[-1]
    assert rerun not in killed_runs
    states = {n.node_id: n.state for n in mlmd.node_results(config.metadata_path, rerun)}
    assert {n: states[n] for n in UPSTREAM} == {n: "cached" for n in UPSTREAM}
    assert states["Trainer"] == "executed" and states["TFLitePusher"] == "executed"
    assert len(publish.list_versions(serving)) == 1
    assert not [n for n in os.listdir(serving) if n.startswith(".")]
    assert os.path.exists(os.path.join(serving, "latest", "model.tflite"))
