"""``benchmark beam-runners``: the Beam data stages give identical outputs on DirectRunner and on Flink."""

import json

import pytest

from ondevice_rec import cli
from ondevice_rec.data import synthetic
from ondevice_rec.pipeline import flink
from ondevice_rec.pipeline.nodes import Nodes


@pytest.mark.slow
@pytest.mark.flink_cluster
def test_data_stages_are_identical_on_a_one_taskmanager_flink_cluster(tmp_path, capsys):
    if not flink.is_installed():
        pytest.skip("the Flink engine is not prepared (./setup.sh or 'ondevice-rec flink install')")
    data = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=60, items=60, mean_ratings_per_user=20,
                                                                        seed=3)), str(tmp_path / "data"), "ml-100k")
    out = tmp_path / "beam_runners.json"
    code = cli.main(["benchmark", "beam-runners", "--data-dir", data, "--work-dir", str(tmp_path / "work"),
                     "--taskmanagers", "1", "--output", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["all_identical"], result["identical"]
    assert set(result["identical"]["flink-1tm"]) == {Nodes.EXAMPLE_GEN, Nodes.STATISTICS_GEN, Nodes.EXAMPLE_VALIDATOR,
                                                     Nodes.WINDOWING, Nodes.TRANSFORM}
    assert "--runner=FlinkRunner" in result["engines"]["flink-1tm"]["args"]
    jobs = result["flink"]["jobs"]["flink-1tm"]
    assert [j["name"] for j in jobs] == [flink.job_name(n) for n in (Nodes.EXAMPLE_GEN, Nodes.STATISTICS_GEN,
                                                                     Nodes.WINDOWING, Nodes.TRANSFORM)]
    assert all(j["state"] == "FINISHED" and len(j["taskmanagers"]) == 1 for j in jobs)
    assert set(result["engines"]["flink-1tm"]["stages"]) >= {Nodes.EXAMPLE_GEN, Nodes.TRANSFORM}
    assert result["windowed_examples"]["Split-test"] > 0
    assert "outputs identical to DirectRunner's" in capsys.readouterr().out
