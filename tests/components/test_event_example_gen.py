"""EventExampleGen's readers write the event shards themselves: one per read unit, in input order."""

import glob
import os

import apache_beam as beam
import tensorflow as tf

from ondevice_rec.components.event_example_gen import executor
from ondevice_rec.data import synthetic


def test_each_read_unit_writes_one_shard_holding_its_events_in_input_order(tmp_path, monkeypatch):
    data = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=30, items=40, mean_ratings_per_user=10,
                                                                        seed=1)), str(tmp_path / "data"), "ml-1m")
    monkeypatch.setattr(executor, "CHUNK_BYTES", 2_000)  # several byte ranges of the one ratings file
    properties = {"input_base": data}
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        _ = (pipeline | executor.EventsToExample(properties, "*")  # pylint: disable=no-value-for-parameter
             | beam.io.WriteToTFRecord(str(tmp_path / "streamed" / "part"), file_name_suffix=".gz"))
    out, sample = tmp_path / "written", tmp_path / "sample"
    os.makedirs(out)
    os.makedirs(sample)
    monkeypatch.setattr(executor, "STATISTICS_SAMPLE_EVENTS", 100)  # a sample smaller than the log
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        executor.write_events(pipeline, properties, "*", str(out), str(tmp_path / "report.json"), str(sample))

    def records(files):
        return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    shards = sorted(glob.glob(str(out / "*")))
    assert os.listdir(executor.writing_dir(str(out))) == []  # every shard renamed out of the temporary folder
    units = executor.read_units(executor.folder_spec("", data), data)
    assert len(units) > 2 and [os.path.basename(s) for s in shards] == [
        f"{executor.SHARD_PREFIX}-{i:05d}-of-{len(units):05d}.gz" for i in range(len(units))]
    written = records(shards)
    assert sorted(written) == sorted(records(glob.glob(str(tmp_path / "streamed" / "*"))))
    # input order: the shards in unit order hold the ratings file's lines in order
    lines = [line.split("::")[:2] for line in open(os.path.join(data, "ratings.dat"))]
    events = [tf.train.Example.FromString(r).features.feature for r in written]
    assert [[e["user_id"].bytes_list.value[0].decode(), e["item_id"].bytes_list.value[0].decode()]
            for e in events] == lines
    # The statistics sample: a shard per unit, each unit's share by its bytes, events of the log, none twice.
    sampled = records(sorted(glob.glob(str(sample / "*"))))
    sizes = executor.sample_sizes(units, 100)
    assert len(glob.glob(str(sample / "*"))) == len(units) and len(sampled) == sum(sizes)
    assert 100 <= len(sampled) < 100 + len(units) < len(written)
    assert set(sampled) <= set(written) and len(set(sampled)) == len(sampled)


def test_a_small_log_is_its_own_statistics_sample(tmp_path):
    data = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=30, items=40, mean_ratings_per_user=10,
                                                                        seed=1)), str(tmp_path / "data"), "ml-1m")
    out, sample = tmp_path / "written", tmp_path / "sample"
    os.makedirs(out)
    os.makedirs(sample)
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        executor.write_events(pipeline, {"input_base": data}, "*", str(out), str(tmp_path / "report.json"),
                              str(sample))

    def records(folder):
        return [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(str(folder / "*"))),
                                                           compression_type="GZIP")]
    assert records(sample) == records(out) and len(records(out)) > 200
