"""ExampleValidator anomalies stop the pipeline before windowing and training, with a readable message."""

import dataclasses

import pytest

from ondevice_rec.pipeline.runner import run_data_stages
from ondevice_rec.components.history_windowing.executor import DataAnomaliesError
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline.config import PipelineConfig

STRICT = """
feature { name: "user_id" type: INT presence { min_fraction: 1.0 } }
feature { name: "movie_id" type: INT int_domain { min: 1 max: 50 } presence { min_fraction: 1.0 } }
feature { name: "rating" type: FLOAT float_domain { min: 0.5 max: 3.0 } presence { min_fraction: 1.0 } }
feature { name: "timestamp" type: INT presence { min_fraction: 1.0 } }
feature { name: "title" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "genres" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "year" type: INT presence { min_fraction: 1.0 } }
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = synthetic.generate(synthetic.SyntheticConfig(users=40, items=80, mean_ratings_per_user=12, seed=5))
    return synthetic.write(data, str(tmp_path_factory.mktemp("data")), "ml-100k")


def test_the_curated_schema_accepts_movielens_events(data_dir, tmp_path):
    outputs = run_data_stages(PipelineConfig(data_dir=data_dir, output_dir=str(tmp_path)))
    assert outputs["HistoryWindowing"]  # windowing ran: no anomaly against pipeline/rating_events.schema.pbtxt


def test_anomalies_stop_the_run_before_windowing_with_every_problem_listed(data_dir, tmp_path):
    schema = tmp_path / "strict.pbtxt"
    schema.write_text(STRICT)
    config = dataclasses.replace(PipelineConfig(data_dir=data_dir, output_dir=str(tmp_path / "out")),
                                 schema_file=str(schema))
    with pytest.raises(DataAnomaliesError) as error:
        run_data_stages(config)
    message = str(error.value)
    assert message.startswith("ExampleValidator found anomalies in the rating events, so the run stops before "
                              "training")
    assert "movie_id: Out-of-range values" in message and "rating: Out-of-range values" in message
    assert not (tmp_path / "out" / "pipeline_root" / "HistoryWindowing" / "examples").exists() or not list(
        (tmp_path / "out" / "pipeline_root" / "HistoryWindowing" / "examples").glob("*/Split-train/*"))
