"""ExampleValidator anomalies stop the pipeline before windowing and training, with a readable message."""

import dataclasses

import pytest

from ondevice_rec.pipeline.runner import run_data_stages
from ondevice_rec.components.history_windowing.executor import DataAnomaliesError
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline.config import PipelineConfig

STRICT = """
feature { name: "user_id" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "item_id" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "rating" type: FLOAT float_domain { min: 0.5 max: 3.0 } presence { min_fraction: 1.0 } }
feature { name: "timestamp" type: INT int_domain { min: 0 max: 1000 } presence { min_fraction: 1.0 } }
feature { name: "title" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "cat_genres" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "num_year" type: FLOAT presence { min_fraction: 1.0 } }
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = synthetic.generate(synthetic.SyntheticConfig(users=40, items=80, mean_ratings_per_user=12, seed=5))
    return synthetic.write(data, str(tmp_path_factory.mktemp("data")), "ml-100k")


def test_the_curated_schema_accepts_movielens_events(quality_run):
    """The quality benchmark's data stages on an ML-100K folder (the preset's curated schema): the validator
    found nothing, so windowing and Transform ran on its first run."""
    from ondevice_rec.pipeline import mlmd
    from ondevice_rec.pipeline.nodes import Nodes
    metadata = PipelineConfig(data_dir=quality_run["data_dir"], output_dir=quality_run["work_dir"]).metadata_path
    first_run = mlmd.run_ids(metadata)[0]
    states = {n.node_id: n.state for n in mlmd.node_results(metadata, first_run)}
    assert states[Nodes.EXAMPLE_VALIDATOR] == states[Nodes.WINDOWING] == states[Nodes.TRANSFORM] == "executed"


def test_anomalies_stop_the_run_before_windowing_with_every_problem_listed(data_dir, tmp_path):
    schema = tmp_path / "strict.pbtxt"
    schema.write_text(STRICT)
    config = dataclasses.replace(PipelineConfig(data_dir=data_dir, output_dir=str(tmp_path / "out")),
                                 schema_file=str(schema))
    with pytest.raises(DataAnomaliesError) as error:
        run_data_stages(config)
    message = str(error.value)
    assert message.startswith("ExampleValidator found anomalies in the events, so the run stops before training")
    assert "timestamp: Out-of-range values" in message and "rating: Out-of-range values" in message
    assert not (tmp_path / "out" / "pipeline_root" / "HistoryWindowing" / "examples").exists() or not list(
        (tmp_path / "out" / "pipeline_root" / "HistoryWindowing" / "examples").glob("*/Split-train/*"))


def test_the_curated_schema_follows_the_event_spec():
    """A log without rating or items file gives a schema without them (so such a log is valid)."""
    from ondevice_rec.components.event_example_gen.schema import curated_schema
    from ondevice_rec.data import event_spec, movielens
    plain = {f.name for f in curated_schema(event_spec.EventSpec(path="log.csv")).feature}
    assert plain == {"user_id", "item_id", "timestamp"}
    for fmt in ("unix_ms", "iso8601"):  # their milliseconds order events within a second
        spec = event_spec.EventSpec(path="log.csv", timestamp="ts", timestamp_format=fmt)
        millis = {f.name: f for f in curated_schema(spec).feature}["timestamp_millis"]
        assert (millis.int_domain.min, millis.int_domain.max, millis.presence.min_fraction) == (0, 999, 1.0)
    preset = {f.name: f for f in curated_schema(movielens.ML_1M.spec()).feature}
    assert set(preset) == {"user_id", "item_id", "timestamp", "rating", "title", "cat_genres", "num_year"}
    assert (preset["rating"].float_domain.min, preset["rating"].float_domain.max) == (0.5, 5.0)
    assert preset["title"].presence.min_fraction == 0  # an item missing from the items file has no title


def test_the_shipped_movielens_schema_is_the_one_derived_from_the_presets():
    from ondevice_rec.components.event_example_gen import schema
    from ondevice_rec.data import movielens
    with open(schema.PRESET_SCHEMA_FILE) as f:
        shipped = f.read()
    assert all(schema.schema_text(f.spec()) == shipped for f in movielens.FORMATS.values())
