"""Shared fixtures: synthetic MovieLens folders and the optional real ML-100K copy."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from ondevice_rec.data import synthetic  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ML100K_DIR = os.path.join(REPO_ROOT, "..", "shared", "data", "ml-100k")

# The tests' small synthetic sets train on the steps of batches of 64 (about 15 an epoch here), as before the
# defaults moved to 256 windows at lr 0.01 for ML-1M scale.
SMALL_DATA_TRAINING = {"batch_size": 64, "learning_rate": 0.005}
SMALL = synthetic.SyntheticConfig(users=150, items=120, mean_ratings_per_user=30, seed=7)

# The session's pipeline runs below (minutes each): every test that uses one runs on the same xdist worker.
SHARED_RUNS = {"two_runs", "quality_run", "published_latency"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """The suite runs on 2 pytest-xdist workers (``--dist loadgroup``, pyproject.toml). A worker computes a
    fixture once per scope it sees, so each module's tests stay on one worker (module fixtures: one pipeline
    run, one trained model per encoder) and the tests of the session's shared runs on another group of their
    own; groups are spread over the workers."""
    for item in items:
        shared = SHARED_RUNS & set(item.fixturenames)
        group = "shared-runs" if shared else item.module.__name__
        if item.get_closest_marker("flink_cluster"):  # one local Flink cluster at a time (4+ JVMs on 2 cores)
            group = "flink-cluster"
        item.add_marker(pytest.mark.xdist_group(group))


def seed_like_tflite(history_length: int = 10) -> bytes:
    """A model shaped like the 2020 ones: int32[N] raw MovieLens-1M ids -> mean embedding -> top-100 ids and
    scores."""
    import numpy as np
    import tensorflow as tf
    from ondevice_rec.benchmarks.latency import REFERENCE_VOCABULARY_SIZE as vocabulary_size
    table = tf.constant(np.random.default_rng(0).normal(size=(vocabulary_size, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([history_length], tf.int32, name="context")])
    def top(ids):
        query = tf.reduce_mean(tf.gather(table, ids), axis=0)
        scores, index = tf.math.top_k(tf.linalg.matvec(table, query), 100)
        return index, scores
    return tf.lite.TFLiteConverter.from_concrete_functions([top.get_concrete_function()]).convert()


@pytest.fixture(scope="session")
def small_data():
    return synthetic.generate(SMALL)


@pytest.fixture(scope="session")
def small_ml1m_dir(tmp_path_factory, small_data):
    return synthetic.write(small_data, str(tmp_path_factory.mktemp("ml1m")), "ml-1m")


@pytest.fixture
def ml100k_dir():
    if not os.path.exists(os.path.join(ML100K_DIR, "u.data")):
        pytest.skip("real MovieLens-100K not found at ../shared/data/ml-100k")
    return ML100K_DIR


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory, small_ml1m_dir):
    """The full pipeline run twice on BeamDagRunner over the same small synthetic ML-1M folder."""
    from ondevice_rec.modules.config import ModelConfig
    from ondevice_rec.pipeline import runner
    from ondevice_rec.components.tflite_pusher.options import PublishOptions
    from ondevice_rec.pipeline.config import PipelineConfig
    out = str(tmp_path_factory.mktemp("out"))
    config = PipelineConfig(data_dir=small_ml1m_dir, output_dir=out,
                            # The state kept whatever the density (the small log has 38 events an item), so
                            # the run, the pusher's checks and the demo cover it.
                            model=ModelConfig(epochs=4, top_k=50, personal_min_events_per_item=0,
                                              **SMALL_DATA_TRAINING),
                            publish=PublishOptions(parity_samples=100, quantization="float16"))
    first = runner.run(config)
    second = runner.run(config)
    return config, first, second


def _cli_output(args):
    """Runs the CLI in-process; returns (exit code, what it printed on stdout)."""
    import contextlib
    import io
    from ondevice_rec import cli
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(args)
    return code, out.getvalue()


@pytest.fixture(scope="session")
def quality_run(tmp_path_factory):
    """`benchmark quality` (bow, N=5) on a synthetic ML-100K folder, once for every test that reads a quality
    result or its data stages (the work folder's MLMD store holds their run)."""
    import json
    root = tmp_path_factory.mktemp("quality")
    data_dir = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=200, items=120, seed=5)),
                               str(root / "data"), "ml-100k")
    work, out = root / "work", root / "out"
    users = root / "users.txt"  # a subset scored apart, as ML-1M-SAS's complete users are
    users.write_text("".join(f"{u}\n" for u in range(1, 51)))
    code, printed = _cli_output(["benchmark", "quality", "--data-dir", data_dir, "--encoders", "bow",
                                 "--history-lengths", "5", "--epochs", "3", "--embedding-dim", "16",
                                 "--hparam", "batch_size=64", "--hparam", "learning_rate=0.005",
                                 "--work-dir", str(work), "--output-dir", str(out), "--users", str(users)])
    assert code == 0, printed
    return {"data_dir": data_dir, "work_dir": str(work), "out_dir": out, "printed": printed,
            "result": json.loads((out / "quality.json").read_text())}


@pytest.fixture(scope="session")
def published_latency(tmp_path_factory, two_runs):
    """`benchmark latency --model` on the version two_runs published, with a stand-in for the 2020 models as
    the reference folder (one int32[10] input, top-100 ids and scores, no signature, as they are)."""
    import json
    config, _, _ = two_runs
    references = tmp_path_factory.mktemp("references")
    (references / "stand_in_top100.tflite").write_bytes(seed_like_tflite())
    out = tmp_path_factory.mktemp("latency") / "latency.json"
    code, printed = _cli_output(["benchmark", "latency", "--model", os.path.join(config.serving_dir, "latest"),
                                 "--iterations", "50", "--output", str(out), "--reference-models", str(references)])
    assert code == 0, printed
    return {"path": out, "printed": printed, "result": json.loads(out.read_text())}
