"""The demo page in headless Chromium: every pick re-ranks, in the browser, exactly as `recommend` does (with a
per-user state: as `recommend_personal` does with the state the page keeps, which a reload restores and "Forget
me" deletes)."""

import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from ondevice_rec import cli
from ondevice_rec.demo import server
from ondevice_rec.serving import Recommender, SignatureCall, interpreter

DEMO_DIR = os.path.dirname(os.path.abspath(server.__file__))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.environ.get("ONDEVICE_REC_TEST_ARTIFACTS", os.path.join(os.path.dirname(DEMO_DIR), "test-artifacts"))


@pytest.fixture
def demo_server(two_runs):
    config, _, _ = two_runs
    model_dir = os.path.join(config.serving_dir, "latest")
    httpd, url = server.make_server(model_dir, port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield url, model_dir
    httpd.shutdown()
    httpd.server_close()


def _get(url):
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


@pytest.mark.slow
def test_every_pick_reranks_in_the_browser_like_the_cli(demo_server, capsys):
    if not (os.path.exists(CHROMIUM) and shutil.which("node")):
        pytest.skip("needs Debian's chromium and node (./setup.sh installs them where it can)")
    url, model_dir = demo_server
    recommender = Recommender(model_dir)
    items = recommender.vocabulary["items"]
    picks = [items[2], items[9], items[20]]
    os.makedirs(ARTIFACTS, exist_ok=True)
    screenshot = os.path.join(ARTIFACTS, "demo.png")
    done = subprocess.run(["node", os.path.join(DEMO_DIR, "drive.mjs"), url, screenshot] + [m["title"] for m in picks],
                          capture_output=True, text=True, timeout=240, cwd=DEMO_DIR)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    steps = result["steps"]
    assert [s["history"] for s in steps] == [[], [picks[0]["key"]], [p["key"] for p in picks[:2]],
                                             [p["key"] for p in picks]]  # keys, as vocabulary.json maps them
    for before, after in zip(steps, steps[1:]):
        assert [i for i, _ in before["recommendations"]] != [i for i, _ in after["recommendations"]]
    personal = result["personal"]
    assert personal["enabled"] == ("personal_state" in recommender.metadata)
    for step in steps[1:]:
        assert step["ms"] > 0
        browser = step["recommendations"]
        assert len(browser) == 10 and not set(i for i, _ in browser) & set(step["history"])
        if personal["enabled"]:  # personalised (the default): the page's state and ranking, replayed here
            assert [i for i, _ in browser] == personalised_ranking(model_dir, recommender, step["history"])
            continue
        # The same ranking as `ondevice-rec recommend` (the Python TFLite interpreter) for this history.
        assert ranking_of_cli(model_dir, step["history"], capsys) == [i for i, _ in browser]
        expected = recommender.recommend(step["history"], 10)
        assert [round(s, 4) for _, s in browser] == pytest.approx([round(s, 4) for _, s in expected], abs=2e-4)
    if personal["enabled"]:
        history = steps[-1]["history"]
        # The state in localStorage is the one the model's update_state gives for the picks, in order.
        stored = personal["stored"]
        assert [recommender.items[i]["key"] for i in stored["history"]] == history
        assert stored["state"] == pytest.approx(replayed_state(model_dir, recommender, history).tolist(), abs=1e-5)
        # Off: the history alone, as `ondevice-rec recommend`; on again: the personalised list.
        assert [i for i, _ in personal["off"]] == ranking_of_cli(model_dir, history, capsys)
        assert personal["on"] == steps[-1]["recommendations"]
        assert personal["off"] != personal["on"]  # the state moved the scores, and the page counts what it added
        assert personal["brought"] == len({i for i, _ in personal["on"]} - {i for i, _ in personal["off"]})
        # A reload restores the history and the state from localStorage; "Forget me" deletes both.
        assert personal["reloaded"] == {"history": history, "recommendations": steps[-1]["recommendations"]}
        assert personal["forgotten"]["history"] == [] and personal["forgotten"]["stored"] is None
        assert personal["forgotten"]["recommendations"] == steps[0]["recommendations"]
    # Everything the page loaded came from the demo server: no CDN, no other host.
    assert result["requests"] and all(r.startswith(url) for r in result["requests"])
    assert os.path.getsize(screenshot) > 10_000


def ranking_of_cli(model_dir, history, capsys):
    """The top 10 keys `ondevice-rec recommend` prints for ``history`` (keys, oldest first)."""
    assert cli.main(["recommend", "--model", model_dir, "--history", ",".join(map(str, history)), "--top-k", "10"]) == 0
    return [line.split()[1] for line in capsys.readouterr().out.splitlines() if line[:3].strip().isdigit()]


def replayed_state(model_dir, recommender, history):
    """The per-user state after ``history`` (keys, oldest first), through the model file's update_state."""
    state = recommender.metadata["personal_state"]
    update = SignatureCall(interpreter(os.path.join(model_dir, "model.tflite")), state["update_signature"])
    value = np.zeros(state["shape"], np.float32)
    for key in history:
        value = update(user_state=value, item_index=np.array(recommender.index_of[key], np.int32))[state["input"]]
    return value


def personalised_ranking(model_dir, recommender, history):
    """The 10 keys recommend_personal ranks first for ``history`` with its replayed state, seen items dropped."""
    lite = interpreter(os.path.join(model_dir, "model.tflite"))
    personal = SignatureCall(lite, recommender.metadata["personal_state"]["recommend_signature"])
    indices = [recommender.index_of[key] for key in history]
    context = recommender.model.pad(indices[::-1])
    top = personal(context_index=context, user_state=replayed_state(model_dir, recommender, history))["top_ids"]
    return [recommender.items[i]["key"] for i in top.tolist() if i not in indices][:10]


def test_server_serves_only_its_own_files(demo_server):
    url, model_dir = demo_server
    assert url.startswith("http://127.0.0.1:")
    assert _get(url)[0] == 200
    assert _get(url + "model/model.tflite")[1] == open(os.path.join(model_dir, "model.tflite"), "rb").read()
    assert _get(url + "static/app.js")[0] == 200
    for attempt in ("static/../server.py", "static/%2e%2e/server.py", "static/..%2fserver.py",
                    "vendor/litert/../../../server.py", "model/../metadata.json", "..%2f..%2fetc%2fpasswd",
                    "static/%2e%2e%2f%2e%2e%2fpipeline/config.py", "//etc/passwd", "static/", "static/%00",
                    "model/metadata.json/../../../README.md"):
        # urllib keeps the path as written (no client-side normalisation of these forms)
        assert _get(url + attempt)[0] == 404, attempt
    request = urllib.request.Request(url + "model/model.tflite", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 405


def test_demo_refuses_a_folder_that_is_not_a_published_model(tmp_path, capsys):
    assert cli.main(["demo", "--model", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert "not a published model folder" in capsys.readouterr().err
