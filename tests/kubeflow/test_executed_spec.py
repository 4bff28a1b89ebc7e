"""The compiled Kubeflow spec executed, task by task, as KFP's launcher runs it (tests/support/kubeflow_stand_in/local_launcher.py), in a
stand-in for the image (tests/support/kubeflow_stand_in/image.py: the project installed non-editable in a fresh virtualenv, the
Dockerfile's environment); its published model against the local BeamDagRunner run's on the same data."""

import importlib.metadata
import json
import os

import numpy as np
import pytest
import yaml

from ondevice_rec import cli
from ondevice_rec.components.tflite_pusher import checks
from ondevice_rec.data import synthetic
from kubeflow_stand_in import image, local_launcher
from ondevice_rec.serving import TFLiteRecommender

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "registry.example/ondevice-rec:7"
SETTINGS = ["--epochs", "2", "--hparam", "batch_size=64", "--hparam", "learning_rate=0.005"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("executed")
    data_dir = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=200, items=150, seed=3)),
                               str(root / "data"), "ml-1m")
    spec_path = str(root / "pipeline.yaml")
    assert cli.main(["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", str(root / "kfp-root"),
                     "--data-dir", data_dir, "--serving-dir", str(root / "kfp-serving"), "--output", spec_path,
                     *SETTINGS]) == 0
    stand_in = image.image_stand_in(str(root / "image"))
    run = local_launcher.run_spec(spec_path, stand_in)
    assert cli.main(["run", "--data-dir", data_dir, "--output-dir", str(root / "local"), *SETTINGS]) == 0
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    return {"run": run, "spec": spec, "stand_in": stand_in, "root": root}


def test_every_task_of_the_spec_executes_in_dependency_order(executed):
    run, spec = executed["run"], executed["spec"]
    assert run.succeeded, [(t.task, t.returncode, t.log_file) for t in run.tasks]
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(t.task for t in run.tasks) == sorted(tasks)
    position = {t.task: i for i, t in enumerate(run.tasks)}
    for name, task in tasks.items():
        upstream = set(task.get("dependentTasks", [])) | {
            a["taskOutputArtifact"]["producerTask"] for a in task.get("inputs", {}).get("artifacts", {}).values()}
        assert all(position[u] < position[name] for u in upstream), name
    consumed = {(a["taskOutputArtifact"]["producerTask"], a["taskOutputArtifact"]["outputArtifactKey"])
                for task in tasks.values() for a in task.get("inputs", {}).get("artifacts", {}).values()}
    executors = spec["deploymentSpec"]["executors"]
    for outcome in run.tasks:
        executor = executors[spec["components"][tasks[outcome.task]["componentRef"]["name"]]["executorLabel"]]
        assert outcome.kind == ("container" if "container" in executor else "resolver"), outcome.task
        if outcome.kind == "container":  # the entrypoint wrote its outputs where KFP's launcher reads them
            with open(os.path.join(run.pipeline_root, run.run_id, outcome.task,
                                   local_launcher.EXECUTOR_OUTPUT_FILE)) as f:
                reported = json.load(f).get("artifacts", {})
            assert set(reported) == set(outcome.outputs), outcome.task
            # what a downstream task reads was written (test_evaluator's blessing, read by none, is not: TFMA
            # writes one only with thresholds)
            assert all(os.path.exists(uri) for key, uris in outcome.outputs.items() for uri in uris
                       if (outcome.task, key) in consumed), outcome.task
        else:  # a first run: no blessed model to resolve
            assert outcome.outputs and all(uris == [] for uris in outcome.outputs.values()), outcome.task


def test_the_tasks_ran_the_installed_project_in_the_images_environment(executed):
    stand_in, run = executed["stand_in"], executed["run"]
    installed = image.installed_project(stand_in)
    assert installed.startswith(os.path.join(stand_in.root, "venv")) and not installed.startswith(REPO_ROOT + "/")
    declared = image.read_dockerfile().env
    assert {k: v for k, v in run.environment.items() if k not in ("PATH", "HOME", "TMPDIR")} == declared
    assert declared["TF_USE_LEGACY_KERAS"] == "1" and "PYTHONPATH" not in run.environment
    trainer_log = next(t.log_file for t in run.tasks if t.task == "Trainer")
    with open(trainer_log) as f:
        assert "ondevice_rec.modules.trainer.run_fn" in f.read()  # the run_fn by module path, from the image


def test_the_published_model_matches_the_local_runs(executed):
    root = executed["root"]
    kfp_model = root / "kfp-serving" / "latest" / "model.tflite"
    local_model = root / "local" / "serving" / "latest" / "model.tflite"
    assert kfp_model.is_file() and local_model.is_file()
    with open(root / "kfp-serving" / "latest" / "eval.json") as f, \
            open(root / "local" / "serving" / "latest" / "eval.json") as g:
        kfp_eval, local_eval = json.load(f), json.load(g)
    assert kfp_eval["num_eval_users"] == local_eval["num_eval_users"] == 200
    kfp, local = TFLiteRecommender(str(kfp_model)), TFLiteRecommender(str(local_model))
    rng = np.random.default_rng(0)
    overlaps = []
    for _ in range(200):
        history = rng.choice(np.arange(1, 151), size=rng.integers(1, 11), replace=False).tolist()
        overlaps.append(checks.top_k_overlap(kfp(history)["top_ids"], local(history)["top_ids"]))
    assert np.mean(overlaps) >= checks.MIN_TOP10_OVERLAP, np.mean(overlaps)
    for metric in ("recall@10", "ndcg@10"):
        assert abs(kfp_eval[metric] - local_eval[metric]) <= 0.01, (metric, kfp_eval, local_eval)


def test_dockerfile_installs_exactly_the_pinned_stack_and_the_project():
    dockerfile = image.read_dockerfile()
    assert dockerfile.base.startswith("python:3.11")
    constraints = os.path.join(REPO_ROOT, "constraints.txt")
    assert ("constraints.txt", "/opt/ondevice-rec/") in dockerfile.copies
    assert (".", "/opt/ondevice-rec/src/") in dockerfile.copies
    installs = dockerfile.pip_installs()
    assert len(installs) == 2 and all("-c" in i and i[i.index("-c") + 1] == "constraints.txt" for i in installs)
    stack, project = installs
    with open(constraints) as f:
        assert "tfx[kfp]==1.16.0" in stack and "tfx==1.16.0\n" in f.read()
    # the project with its own requirements, each pinned: nothing left for pip to pick a version of
    assert "./src" in project and "--no-deps" not in project and "-e" not in project
    requirements = [r for r in importlib.metadata.requires("ondevice-rec") if "extra ==" not in r]
    assert requirements and image.requirements_pinned(constraints, requirements) == []
    assert image.requirements_pinned(constraints, ["not-a-pinned-package>=1"]) == ["not-a-pinned-package>=1"]


def test_the_next_runs_resolvers_find_this_runs_blessed_model(executed):
    """The two resolver filters TFX compiled, against the artifacts this run recorded: the blessing the Evaluator
    wrote (blessed: the first model passes the floor) and, through its current_model_id, the Trainer's model."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    run, spec = executed["run"], executed["spec"]
    record = local_launcher.ArtifactRecord(os.path.join(run.pipeline_root, local_launcher.ARTIFACTS_FILE))
    queries = {key: query["filter"] for executor in spec["deploymentSpec"]["executors"].values()
               if "resolver" in executor for key, query in executor["resolver"]["outputArtifactQueries"].items()}
    outputs = {t.task: t.outputs for t in run.tasks}
    blessing = local_launcher.resolve_query(queries["model_blessing"], pipeline_spec_pb2.ExecutorInput.Inputs(), record)
    assert [a.uri for a in blessing] == outputs["Evaluator"]["blessing"]
    inputs = pipeline_spec_pb2.ExecutorInput.Inputs()
    inputs.artifacts["input"].artifacts.extend(blessing)
    model = local_launcher.resolve_query(queries["model"], inputs, record)
    assert [a.uri for a in model] == outputs["Trainer"]["model"]
    with pytest.raises(ValueError, match="not one this launcher evaluates"):
        local_launcher.resolve_query('uri="x"', inputs, record)
