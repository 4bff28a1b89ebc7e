"""The Beam data stages give identical outputs on DirectRunner and on a local multi-worker portable engine."""

import json

import pytest

from ondevice_rec import cli
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline.portable_beam import LocalPortableCluster


@pytest.mark.slow
def test_data_stages_are_identical_on_a_multi_worker_portable_engine(tmp_path, capsys):
    data = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=60, items=60, mean_ratings_per_user=20,
                                                                        seed=3)), str(tmp_path / "data"), "ml-100k")
    out = tmp_path / "beam_runners.json"
    code = cli.main(["benchmark", "beam-runners", "--data-dir", data, "--work-dir", str(tmp_path / "work"),
                     "--out", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["all_identical"], result["identical"]
    assert set(result["identical"]) == {"EventExampleGen", "StatisticsGen", "ExampleValidator", "HistoryWindowing",
                                        "Transform"}
    assert "--runner=PortableRunner" in result["portable_runner"]["args"]
    # The pool started 2 SDK worker processes for each Beam job (ExampleGen, StatisticsGen, HistoryWindowing).
    assert result["portable_runner"]["sdk_worker_processes_started"] >= 6
    assert result["windowed_examples"]["Split-test"] > 0
    assert "identical outputs" in capsys.readouterr().out


def test_cluster_processes_are_stopped_on_exit(tmp_path):
    with LocalPortableCluster(workers=2, log_dir=str(tmp_path)) as cluster:
        processes = list(cluster._processes)  # pylint: disable=protected-access
        assert all(p.poll() is None for p in processes)
        assert f"--job_endpoint=localhost:{cluster.job_port}" in cluster.beam_args()
        assert "--direct_num_workers=2" in cluster.beam_args()
    assert all(p.poll() is not None for p in processes)
