"""Kubeflow: the compiled spec, the recurring-run request against a local fake KFP API, the image's install."""

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest
import yaml

from ondevice_rec import cli
from ondevice_rec.kubeflow import runner as kubeflow_runner, schedule
from ondevice_rec.pipeline import config as pipeline_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "registry.example/ondevice-rec:7"
TASKS = {"EventExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "HistoryWindowing", "Transform",
         "Trainer",
         "Evaluator", "test_evaluator", "TFLitePusher", "latest_blessed_model_resolver-model-resolver",
         "latest_blessed_model_resolver-model-blessing-resolver"}
BEAM_COMPONENTS = {"EventExampleGen", "StatisticsGen", "HistoryWindowing", "Transform", "Evaluator",
                   "test_evaluator"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp")
    path = str(out / "pipeline.yaml")
    assert cli.main(["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", "gs://bucket/root",
                     "--data-dir", "gs://bucket/movielens", "--serving-dir", "/gcs/bucket/serving", "--spans",
                     "--warm-start", "--output", path, "--encoder", "transformer", "--epochs", "3",
                     "--beam-arg=--runner=DataflowRunner", "--beam-arg=--project=my-project",
                     "--beam-arg=--setup_file=/opt/ondevice-rec/src/setup.py"]) == 0
    with open(path) as f:
        return path, yaml.safe_load(f)


def test_compiled_spec_has_every_component_in_the_image_with_caching_and_beam_args(compiled):
    path, spec = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS
    executors = spec["deploymentSpec"]["executors"]
    containers = 0
    for name, task in tasks.items():
        executor = executors[spec["components"][task["componentRef"]["name"]]["executorLabel"]]
        if "container" not in executor:  # the two resolver steps are KFP resolver nodes, not containers
            assert "resolver" in executor and "resolver" in name
            continue
        containers += 1
        assert task["cachingOptions"]["enableCache"] is True, name
        container = executor["container"]
        assert container["image"] == IMAGE, name
        if name in BEAM_COMPONENTS:
            assert {"--runner=DataflowRunner", "--project=my-project",
                    "--setup_file=/opt/ondevice-rec/src/setup.py"} <= set(container["args"]), name
    assert containers == len(TASKS) - 2
    # Our code is referenced by module path inside the image: no module file, no uploaded wheel.
    text = open(path).read()
    assert "ondevice_rec.modules.trainer.run_fn" in text
    assert "ondevice_rec.components.tflite_pusher.executor" in text
    assert "module_file" not in text and ".whl" not in text
    # The curated schema (the MovieLens presets') is read where the image keeps the sources.
    assert "/opt/ondevice-rec/src/components/event_example_gen/movielens_events.schema.pbtxt" in json.dumps(
        tasks["ImportSchemaGen"])
    # Transform analyses the train split only and hands the Trainer its graph.
    assert "transform_graph" in tasks["Trainer"]["inputs"]["artifacts"]
    # The trainer warm-starts from the latest blessed model, and ExampleGen reads the latest span.
    assert tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]["producerTask"] == \
        "latest_blessed_model_resolver-model-resolver"
    assert "span-{SPAN}/*" in json.dumps(tasks["EventExampleGen"]["inputs"])
    custom = json.loads(tasks["Trainer"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"])
    assert custom["encoder"] == "transformer" and custom["epochs"] == 3
    # Data location is a run parameter (defaulting to --data-dir); the pipeline root is recorded.
    assert spec["root"]["inputDefinitions"]["parameters"]["data_root"]["defaultValue"] == "gs://bucket/movielens"
    assert tasks["EventExampleGen"]["inputs"]["parameters"]["input_base"] == {
        "componentInputParameter": "data_root"}
    assert spec["defaultPipelineRoot"] == "gs://bucket/root"
    # The kfp SDK reads it into its PipelineSpec proto, as it does before submitting.
    from kfp.client.client import _extract_pipeline_yaml
    assert _extract_pipeline_yaml(path).pipeline_spec.pipeline_info.name == "ondevice-rec"


def test_an_event_spec_compiles_with_its_schema_under_the_pipeline_root(tmp_path):
    """Another log (string SKUs, spans): the spec travels in ExampleGen's parameters, its curated schema is
    written under the pipeline root (where the containers read it)."""
    spec = tmp_path / "events.json"
    spec.write_text(json.dumps({"events": "events-*.jsonl*", "user": "customer", "item": "sku", "timestamp": "ts",
                                "timestamp_format": "unix_ms"}))
    root, path = tmp_path / "root", str(tmp_path / "pipeline.yaml")
    assert cli.main(["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", str(root), "--data-dir",
                     "/data/shop", "--serving-dir", "/mnt/serving", "--spans", "--warm-start", "--events", str(spec),
                     "--output", path]) == 0
    with open(path) as f:
        text = f.read()
    tasks = yaml.safe_load(text)["root"]["dag"]["tasks"]
    # No dependency flag given: the Beam stages name the image's setup.py, never this machine's.
    assert f"--setup_file={kubeflow_runner.IMAGE_SETUP_FILE}" in text and pipeline_config.PROJECT_SETUP_FILE not in text
    schemas = list((root / "curated_schema").glob("events-*.schema.pbtxt"))
    assert len(schemas) == 1 and 'name: "rating"' not in schemas[0].read_text()  # this log has no rating
    assert str(schemas[0]) in json.dumps(tasks["ImportSchemaGen"])
    assert "customer" in json.dumps(tasks["EventExampleGen"]["inputs"])  # the spec, in its custom_config


def test_compile_takes_an_events_file_with_event_fields_as_run_does(tmp_path, capsys):
    """The same data-source options as run: an events file named as the containers see it, described by
    --event-field; an --event-field without --events is refused (the data folder is not read here)."""
    path = str(tmp_path / "pipeline.yaml")
    common = ["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", str(tmp_path / "root"), "--data-dir",
              "/data/shop", "--serving-dir", "/mnt/serving", "--output", path]
    assert cli.main(common + ["--events", "events-*.csv", "--event-field", "user=customer",
                              "--event-field", "item=sku"]) == 0
    tasks = yaml.safe_load(open(path))["root"]["dag"]["tasks"]
    config = json.dumps(tasks["EventExampleGen"]["inputs"])
    assert "customer" in config and "events-*.csv" in config
    assert cli.main(common + ["--event-field", "user=customer"]) == cli.EXIT_BAD_INPUT
    assert "give --events too" in capsys.readouterr().err


def test_flink_master_compiles_the_images_engine_without_asking_the_cluster(tmp_path):
    """The steps reach the cluster, not the compiling machine: nothing answers at the address here."""
    from ondevice_rec.pipeline import flink
    path = str(tmp_path / "pipeline.yaml")
    assert cli.main(["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", "gs://b/root", "--data-dir",
                     "gs://b/d", "--serving-dir", "/mnt/serving", "--output", path,
                     "--flink-master", "flink-jobmanager-rest.flink:8081"]) == 0
    spec = yaml.safe_load(open(path))
    tasks, executors = spec["root"]["dag"]["tasks"], spec["deploymentSpec"]["executors"]
    for name in BEAM_COMPONENTS:
        args = executors[spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]]["container"]["args"]
        assert {"--runner=FlinkRunner", "--flink_master=flink-jobmanager-rest.flink:8081",
                f"--flink_job_server_jar={flink.job_server_jar(kubeflow_runner.IMAGE_ENGINE_CACHE)}",
                f"--job_name={flink.job_name(name)}"} <= set(args), name
        assert json.dumps({"command": kubeflow_runner.IMAGE_WORKER_COMMAND}) in " ".join(args)
        assert not any(a.startswith("--parallelism") for a in args)
    assert "ONDEVICE_REC_CACHE=" + kubeflow_runner.IMAGE_ENGINE_CACHE in open(
        os.path.join(REPO_ROOT, "kubeflow", "Dockerfile")).read()


def test_compile_refuses_a_serving_uri_and_a_wrong_extension(tmp_path, capsys):
    base = ["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", "gs://b/root", "--data-dir", "gs://b/d"]
    assert cli.main(base + ["--serving-dir", "gs://b/serving", "--output", str(tmp_path / "p.yaml")]) == 2
    assert "POSIX path" in capsys.readouterr().err
    assert cli.main(base + ["--serving-dir", "/mnt/serving", "--output", str(tmp_path / "p.txt")]) == 2
    assert ".yaml" in capsys.readouterr().err


class FakeKFP(http.server.BaseHTTPRequestHandler):
    """Answers the KFP v2beta1 calls the SDK makes to create a recurring run; records every request."""

    requests = []

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        FakeKFP.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({})  # no experiment of that name yet
        if self.path.startswith("/apis/v2beta1/healthz"):
            return self._reply({"multi_user": False})
        self.send_error(404)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        FakeKFP.requests.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            return self._reply({"experiment_id": "exp-42", "display_name": body["display_name"]})
        if self.path == "/apis/v2beta1/recurringruns":
            return self._reply({**body, "recurring_run_id": "rr-7", "status": "ENABLED"})
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_kfp():
    FakeKFP.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_schedule_creates_a_recurring_run_through_the_kfp_sdk(compiled, fake_kfp, capsys):
    path, spec = compiled
    assert cli.main(["kubeflow", "schedule", "--host", fake_kfp, "--pipeline", path, "--cron", "0 0 3 * * *",
                     "--experiment", "nightly", "--param", "data_root=gs://bucket/movielens-2"]) == 0
    assert '"recurring_run_id": "rr-7"' in capsys.readouterr().out
    posts = {p: body for method, p, body in FakeKFP.requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "nightly"
    run = posts["/apis/v2beta1/recurringruns"]
    assert run["experiment_id"] == "exp-42"
    assert run["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert run["max_concurrency"] == "1" or run["max_concurrency"] == 1
    assert run["no_catchup"] is True and run["mode"] == "ENABLE"
    assert run["runtime_config"]["parameters"] == {"data_root": "gs://bucket/movielens-2"}
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/root"
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "ondevice-rec"
    assert set(run["pipeline_spec"]["root"]["dag"]["tasks"]) == TASKS


def test_schedule_dry_run_and_bad_requests_contact_no_server(compiled, fake_kfp, capsys):
    path, _ = compiled
    assert cli.main(["kubeflow", "schedule", "--host", fake_kfp, "--pipeline", path, "--cron", "0 0 3 * * *",
                     "--experiment", "nightly", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and '"cron": "0 0 3 * * *"' in out and '"no_catchup": true' in out
    assert cli.main(["kubeflow", "schedule", "--host", fake_kfp, "--pipeline", path, "--cron", "0 3 * * *",
                     "--experiment", "nightly"]) == 2
    assert "6 fields" in capsys.readouterr().err
    assert cli.main(["kubeflow", "schedule", "--host", fake_kfp, "--pipeline", path, "--cron", "0 0 3 * * *",
                     "--experiment", "nightly", "--param", "epochs=3"]) == 2
    assert "unknown pipeline parameter(s) epochs; the pipeline takes: data_root" in capsys.readouterr().err
    assert FakeKFP.requests == []


def test_dockerfile_installs_the_pinned_stack_and_the_project():
    with open(os.path.join(REPO_ROOT, "kubeflow", "Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert "ENV TF_USE_LEGACY_KERAS=1" in text
    assert '-c constraints.txt "tfx[kfp]==1.16.0"' in text and "-c constraints.txt ./src" in text
    # where the compiled spec looks for the sources (schema, Beam's setup.py)
    assert "WORKDIR /opt/ondevice-rec\n" in text and "COPY . src/" in text
    assert kubeflow_runner.IMAGE_SOURCE_DIR == "/opt/ondevice-rec/src"


def setup_subpackages():
    """setup.py's SUBPACKAGES, read without running setup()."""
    import ast
    with open(os.path.join(REPO_ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", "") == "SUBPACKAGES")


def test_the_package_built_for_the_image_and_for_beam_workers_holds_every_module(tmp_path):
    """The image installs the project as a wheel; Beam's --setup_file runs ``setup.py sdist``."""
    # Built from what the image's build context holds (.dockerignore leaves out build/, whose stale copies of
    # removed modules setuptools would otherwise pack).
    context = tmp_path / "context"
    shutil.copytree(REPO_ROOT, context, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", "out", "tests", "node_modules", "results"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(context)], check=True, capture_output=True)
    wheel, = os.listdir(tmp_path / "wheel")
    names = set(zipfile.ZipFile(tmp_path / "wheel" / wheel).namelist())
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "sdist")],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    sdist, = os.listdir(tmp_path / "sdist")
    in_sdist = {n.split("/", 1)[1] for n in tarfile.open(tmp_path / "sdist" / sdist).getnames() if "/" in n}
    for module in ("ondevice_rec/modules/trainer.py", "ondevice_rec/components/tflite_pusher/executor.py",
                   "ondevice_rec/components/tflite_pusher/metadata.schema.json",
                   "ondevice_rec/components/history_windowing/executor.py", "ondevice_rec/kubeflow/runner.py",
                   "ondevice_rec/data/movielens.py", "ondevice_rec/setup.py"):  # an install's --setup_file
        assert module in names, module
    for source in ("setup.py", "modules/trainer.py", "components/history_windowing/windowing.py"):
        assert source in in_sdist, source
    # Only the product is shipped: every module of the wheel comes from a product folder of this checkout, and
    # no test or test harness (the Kubeflow image stand-in and local launcher live under tests/support/).
    modules = {n for n in names if n.endswith(".py")}
    product = {"ondevice_rec/" + os.path.relpath(os.path.join(root, f), REPO_ROOT).replace(os.sep, "/")
               for top in setup_subpackages() for root, _, files in os.walk(os.path.join(REPO_ROOT, top))
               if "node_modules" not in root for f in files if f.endswith(".py")}
    top_level = {"ondevice_rec/" + f for f in os.listdir(REPO_ROOT) if f.endswith(".py")}
    assert modules <= product | top_level, sorted(modules - product - top_level)
    assert not [n for n in names if "/tests/" in n or "test_" in n.rsplit("/", 1)[-1]
                or n.rsplit("/", 1)[-1] in ("local_launcher.py", "image.py", "conftest.py")]
