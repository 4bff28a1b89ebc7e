"""Scheduled retraining: data spans, warm start, and a worse model never replacing the one serving."""

import dataclasses
import json
import os
import re

import pytest

from ondevice_rec import cli
from ondevice_rec.components.tflite_pusher.options import PublishOptions
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline import mlmd, runner
from ondevice_rec.pipeline.config import SPAN_PATTERN, PipelineConfig
from ondevice_rec.modules import ranking_metrics
from ondevice_rec.modules.config import ModelConfig

SPAN_1 = synthetic.SyntheticConfig(users=150, items=120, mean_ratings_per_user=30, seed=7)
SPAN_2 = dataclasses.replace(SPAN_1, users=170)  # a later snapshot of the same world: more users, new ratings


def _executions(config, run_id):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path
    store = metadata_store.MetadataStore(connection)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    return store, store.get_executions_by_context(run.id)


def _input_types(config, run_id, node_type_name):
    """Artifact type names of the inputs of the run's execution of ``node_type_name``."""
    store, executions = _executions(config, run_id)
    execution = next(e for e in executions if store.get_execution_types_by_id([e.type_id])[0].name
                     .endswith(node_type_name))
    events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type == e.INPUT]
    return {(e.path.steps[0].key, store.get_artifact_types_by_id(
        [store.get_artifacts_by_id([e.artifact_id])[0].type_id])[0].name) for e in events}


def _span_of_examples(config, run_id):
    store, _ = _executions(config, run_id)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    spans = {a.custom_properties["span"].int_value for a in store.get_artifacts_by_context(run.id)
             if "/EventExampleGen/" in a.uri}
    return spans


@pytest.fixture(scope="module")
def cycles(tmp_path_factory):
    data = tmp_path_factory.mktemp("spans")
    span_1 = synthetic.write(synthetic.generate(SPAN_1), str(data / "span-1"), "ml-1m")
    # Real logs are messy: a malformed line, a duplicated row and a user with a single rating.
    with open(os.path.join(span_1, "ratings.dat"), "r+", encoding="latin-1") as f:
        first_line = f.readline()
        f.seek(0, os.SEEK_END)
        f.write("12::oops\n" + first_line + "9999::1::4::978300000\n")
    out = str(tmp_path_factory.mktemp("retrain"))
    # Cycle 1, through the CLI: span 1, nothing to warm-start from yet.
    assert cli.main(["retrain", "--data-dir", str(data), "--output-dir", out, "--epochs", "4", "--top-k", "20",
                     "--keep-versions", "3", "--batch-size", "64", "--learning-rate", "0.005"]) == 0
    config = PipelineConfig(data_dir=str(data), output_dir=out, input_pattern=SPAN_PATTERN, warm_start=True,
                            model=ModelConfig(epochs=4, top_k=20, batch_size=64, learning_rate=0.005), publish=PublishOptions(keep_versions=3))
    first = runner.summarize(config, mlmd.run_ids(config.metadata_path)[-1])
    served_after_first = os.path.realpath(os.path.join(config.serving_dir, "latest"))
    # Span 2 arrives. Cycle 2: a deliberately crippled trainer (one step, from scratch).
    synthetic.write(synthetic.generate(SPAN_2), str(data / "span-2"), "ml-1m")
    crippled = dataclasses.replace(config, warm_start=False,
                                   model=ModelConfig(epochs=1, steps_per_epoch=1, top_k=20))
    second = runner.run(crippled)
    served_after_second = (os.path.realpath(os.path.join(config.serving_dir, "latest")),
                           sorted(d for d in os.listdir(config.serving_dir) if d != "latest"))
    # Cycle 3: the regular retraining on span 2, warm-started from the model serving (blessed if its eval
    # recall@10 is within 0.05 of the serving model's, as a user would allow for 150 eval users' noise).
    third = runner.run(dataclasses.replace(config, max_recall_regression=0.05))
    return config, (first, served_after_first), (second, served_after_second), third


@pytest.mark.slow
def test_messy_lines_are_skipped_counted_and_shown_in_the_summary(cycles):
    config, (first, _), _, _ = cycles
    data = first.data
    assert data["bad_lines"] == 1 and data["span"] == 1
    assert data["input_lines"] == sum(1 for _ in open(os.path.join(config.data_dir, "span-1", "ratings.dat")))
    assert data["duplicate_events"] == 1 and data["users_skipped"] == 1
    text = runner.format_summary(first)
    assert "1 malformed lines skipped" in text and "1 repeated events of an item dropped" in text
    assert f"span-1{os.sep}ratings.dat:{data['input_lines'] - 2}: expected 4 fields" in text


@pytest.mark.slow
def test_first_span_is_blessed_and_published(cycles):
    config, (first, served), _, _ = cycles
    assert first.push["pushed"] == 1 and served == first.push["pushed_destination"]
    assert _span_of_examples(config, first.run_id) == {1}
    with open(os.path.join(served, "metadata.json")) as f:
        assert json.load(f)["pipeline_run_id"] == first.run_id


@pytest.mark.slow
def test_a_worse_model_on_the_next_span_is_not_blessed_and_latest_is_unchanged(cycles):
    config, (first, served_first), (second, (served_second, versions)), _ = cycles
    assert _span_of_examples(config, second.run_id) == {2}  # the new span was picked up
    assert {n.node_id: n.state for n in second.nodes}["Trainer"] == "executed"
    assert second.push["pushed"] == 0 and "did not bless" in second.push["push_outcome"]
    assert served_second == served_first
    assert versions == [os.path.basename(served_first)]  # nothing else was written


@pytest.mark.slow
def test_regular_retraining_warm_starts_from_the_serving_model_and_publishes(cycles):
    config, (first, served_first), _, third = cycles
    # The Trainer got the latest blessed model (span 1's) as its base model ...
    assert ("base_model", "Model") in _input_types(config, third.run_id, "Trainer")
    assert ("base_model", "Model") not in _input_types(config, first.run_id, "Trainer")
    # ... and its model, no worse on span 2's eval split than span 1's model, replaced it.
    assert third.push["pushed"] == 1
    latest = os.path.realpath(os.path.join(config.serving_dir, "latest"))
    assert latest == third.push["pushed_destination"] != served_first
    assert third.test_metrics["recall@10"] > third.popularity["recall@10"]


def test_retrain_without_span_folders_says_what_it_expects(tmp_path, capsys):
    assert cli.main(["retrain", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 2
    assert "span-1/, span-2/" in capsys.readouterr().err


ARTIFACTS = os.environ.get("ONDEVICE_REC_TEST_ARTIFACTS", os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "test-artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.slow
def test_the_operators_report_shows_every_cycle_as_mlmd_recorded_it(cycles, tmp_path):
    from ondevice_rec.pipeline import report
    config, (first, _), (second, _), third = cycles
    out = str(tmp_path / "report.html")
    assert cli.main(["report", "--output-dir", config.output_dir, "--output", out]) == 0
    collected = report.collect(config.output_dir)
    history = collected["history"]
    store, _ = _executions(config, first.run_id)
    assert [r["run_id"] for r in history] == mlmd.run_ids(config.metadata_path) == [
        first.run_id, second.run_id, third.run_id]
    for row, summary in zip(history, (first, second, third)):
        run = store.get_context_by_type_and_name("pipeline_run", summary.run_id)
        node = store.get_context_by_type_and_name("node", f"{config.pipeline_name}.Evaluator")
        evaluator, = [e for e in store.get_executions_by_context(run.id)
                      if e.id in {x.id for x in store.get_executions_by_context(node.id)}]
        blessing, = [store.get_artifacts_by_id([e.artifact_id])[0] for e in
                     store.get_events_by_execution_ids([evaluator.id])
                     if e.type == e.OUTPUT and e.path.steps[0].key == "blessing"]
        assert row["blessed"] == blessing.custom_properties["blessed"].int_value
        assert row["published"] == (summary.push["pushed_version"] if summary.push["pushed"] == 1 else None)
        assert row["model_bytes"] == summary.push.get("tflite_bytes")
        assert row["started"] == run.create_time_since_epoch / 1000.0
        assert row["span"] == (1 if summary is first else 2)
        if summary.test_metrics:  # the published ones: the test evaluation is what was published with it
            assert row["test"] == pytest.approx({k: summary.test_metrics[k] for k in ranking_metrics.NAMES}, abs=1e-6)
        assert set(row["eval"]) == set(row["test"]) == set(ranking_metrics.NAMES)
        assert 0 < row["eval"]["recall@10"] <= 1 and 0 <= row["test"]["recall@10"] <= 1
    assert [r["blessed"] for r in history] == [1, 0, 1]
    assert history[0]["baseline_run"] is None and "first" in history[0]["blessing_reason"]
    # cycles 2 and 3 were compared with the model serving then: cycle 1's
    assert history[1]["baseline_run"] == history[2]["baseline_run"] == first.run_id
    assert f"< the serving model's {history[1]['baseline']['recall@10']:.4f}" in history[1]["blessing_reason"]
    assert f">= the serving model's {history[2]['baseline']['recall@10']:.4f}" in history[2]["blessing_reason"]
    # the serving model's training curve and its baselines on the same split
    curve = collected["training"]["history"]
    assert len(curve["loss"]) == len(curve["val_recall@10"]) == collected["training"]["epochs_run"]
    assert set(collected["baselines"]) == {"popularity", "markov (last item)", "markov (last 3 items)"}
    with open(out, encoding="utf-8") as f:
        page = f.read()
    for run_id in (first.run_id, second.run_id, third.run_id):
        assert run_id in page
    assert page.count("data:image/png;base64,") >= 2  # recall over time, the training curve
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"\d\.\d+e\+\d\d", text)  # no raw float timestamps (8.74725e+08)
    assert " UTC" in page and "No quality benchmark given" in page
    if os.path.exists(CHROMIUM):  # what the operator sees, saved next to the demo's screenshot
        os.makedirs(ARTIFACTS, exist_ok=True)
        screenshot = os.path.join(ARTIFACTS, "report.png")
        import subprocess
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={screenshot}", "--window-size=1280,3600", f"file://{out}"],
                       check=True, capture_output=True, timeout=120)
        assert os.path.getsize(screenshot) > 50_000
