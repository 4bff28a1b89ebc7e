"""The demo page in headless Chromium: every pick re-ranks, in the browser, exactly as `recommend` does."""

import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from ondevice_rec import cli
from ondevice_rec.demo import server
from ondevice_rec.serving import Recommender

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
    for step in steps[1:]:
        assert step["ms"] > 0
        browser = step["recommendations"]
        assert len(browser) == 10 and not set(i for i, _ in browser) & set(step["history"])
        # The same ranking as `ondevice-rec recommend` (the Python TFLite interpreter) for this history.
        assert cli.main(["recommend", "--model", model_dir, "--history", ",".join(map(str, step["history"])),
                         "--top-k", "10"]) == 0
        printed = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line[:3].strip().isdigit()]
        assert [i for i, _ in browser] == printed
        expected = recommender.recommend(step["history"], 10)
        assert [round(s, 4) for _, s in browser] == pytest.approx([round(s, 4) for _, s in expected], abs=2e-4)
    # Everything the page loaded came from the demo server: no CDN, no other host.
    assert result["requests"] and all(r.startswith(url) for r in result["requests"])
    assert os.path.getsize(screenshot) > 10_000


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
