"""Atomic publishing: versions appear whole, latest moves by rename, old versions are pruned."""

import os

import pytest

from ondevice_rec.components.tflite_pusher import publish


def files(tag):
    return {publish.MODEL_FILE: tag.encode(), publish.METADATA_FILE: b'{"model_uri": "%s"}' % tag.encode()}


def test_publish_moves_latest_and_keeps_the_newest_versions(tmp_path):
    serving = str(tmp_path / "serving")
    published = [publish.publish(serving, files(f"m{i}"), keep_versions=2, version=f"v{i}") for i in range(4)]
    assert publish.current_version(serving) == "v3"
    assert publish.list_versions(serving) == ["v2", "v3"]
    assert open(os.path.join(serving, "latest", publish.MODEL_FILE), "rb").read() == b"m3"
    assert os.readlink(os.path.join(serving, "latest")) == "v3"  # relative: the folder can move
    assert published[-1] == os.path.join(serving, "v3")
    assert not [n for n in os.listdir(serving) if n.startswith(".")], "no staging leftovers"


def test_a_crash_while_writing_leaves_the_previous_version_serving(tmp_path, monkeypatch):
    serving = str(tmp_path / "serving")
    publish.publish(serving, files("good"), version="v1")

    class Boom(dict):
        def items(self):
            yield publish.MODEL_FILE, b"half"
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        publish.publish(serving, Boom(), version="v2")
    assert publish.current_version(serving) == "v1"
    assert publish.list_versions(serving) == ["v1"]
    assert not [n for n in os.listdir(serving) if n.startswith(".staging")]


def test_version_names_are_unique_and_sortable(tmp_path):
    serving = str(tmp_path)
    first = publish.new_version_name(serving)
    os.makedirs(os.path.join(serving, first))
    second = publish.new_version_name(serving)
    assert second != first and second.startswith(first)


def test_pruning_never_removes_the_serving_version(tmp_path):
    serving = str(tmp_path)
    for name in ("v1", "v2", "v3"):
        os.makedirs(os.path.join(serving, name))
    os.symlink("v1", os.path.join(serving, "latest"))
    assert publish.prune(serving, keep_versions=1) == ["v2"]
    assert publish.list_versions(serving) == ["v1", "v3"]


KILL_AT = {
    # dies after the files are written, before the staging folder is renamed into place
    "rename": "os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)",
    # dies after the new version is in place, before latest is switched to it
    "replace": "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("step", sorted(KILL_AT))
def test_a_publisher_killed_mid_publish_leaves_the_previous_version_serving(tmp_path, step):
    import subprocess
    import sys
    serving = str(tmp_path / "serving")
    publish.publish(serving, files("good"), version="v1")
    script = (f"import os, signal\n{KILL_AT[step]}\n"
              "from ondevice_rec.components.tflite_pusher import publish\n"
              f"publish.publish({serving!r}, {{'model.tflite': b'new', 'metadata.json': b'{{}}'}}, version='v2')\n")
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert publish.current_version(serving) == "v1"
    assert open(os.path.join(serving, "latest", publish.MODEL_FILE), "rb").read() == b"good"
    assert [n for n in os.listdir(serving) if n.startswith(".")], "the killed publisher left its temporary files"
    # The next publish cleans up after the dead one and moves latest on.
    publish.publish(serving, files("next"), version="v3")
    assert publish.current_version(serving) == "v3"
    assert not [n for n in os.listdir(serving) if n.startswith(".")]
