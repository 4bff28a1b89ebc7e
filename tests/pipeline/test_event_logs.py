"""A non-MovieLens log end to end: the synthetic shop (JSON Lines, one file gzipped, string SKUs, event types,
millisecond timestamps, a CSV catalogue) through BeamDagRunner, published, and beating popularity."""

import json
import os

import pytest

from ondevice_rec import cli
from ondevice_rec.data import event_spec, synthetic
from ondevice_rec.modules.config import ModelConfig
from ondevice_rec.pipeline import runner
from ondevice_rec.pipeline.config import PipelineConfig


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    data = synthetic.generate(synthetic.SyntheticConfig(users=200, items=120, mean_ratings_per_user=25, seed=4))
    folder = synthetic.write(data, str(tmp_path_factory.mktemp("shop")), synthetic.ECOMMERCE)
    spec = event_spec.load_spec(os.path.join(folder, event_spec.SPEC_FILE))
    catalogue = spec.items.files(folder)[0]  # one key listed twice: its first row is kept, the repeat counted
    with open(catalogue, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(catalogue, "a", encoding="utf-8") as f:
        f.write(lines[1].replace(",", ",REPEATED ", 1) + "\n")
    config = PipelineConfig(data_dir=folder, output_dir=str(tmp_path_factory.mktemp("out")), events=spec,
                            model=ModelConfig(epochs=6, top_k=20, batch_size=64, learning_rate=0.005))
    return config, runner.run(config)


@pytest.mark.slow
def test_a_shop_log_with_string_skus_is_published_and_beats_popularity(shop_run, capsys):
    config, summary = shop_run
    assert summary.push["pushed"] == 1, summary.push
    assert summary.test_metrics["recall@10"] > 2 * summary.popularity["recall@10"], (summary.test_metrics,
                                                                                   summary.popularity)
    # The wishlist noise was filtered by keep_events and counted; the repeated cart / purchase of a viewed
    # SKU were dropped as repeats of the same item.
    assert summary.data["filtered_events"] > 0 and summary.data["duplicate_events"] > 0
    assert summary.data["bad_lines"] == 0 and summary.data["events_of_unlisted_items"] == 0
    assert summary.data["duplicate_item_keys"] == 1 and summary.data["item_rows_skipped"] == 0
    assert "Items file: 0 unusable rows skipped; 1 rows repeating an earlier row's key ignored" in \
        runner.format_summary(summary)
    latest = os.path.join(config.serving_dir, "latest")
    with open(os.path.join(latest, "vocabulary.json"), encoding="utf-8") as f:
        vocabulary = json.load(f)
    keys = [m["key"] for m in vocabulary["items"]]
    assert not any("REPEATED" in json.dumps(m) for m in vocabulary["items"])  # the first row's title kept
    assert all(k.startswith("B0") and k.endswith("X") for k in keys)  # the SKUs themselves, as strings
    assert set(vocabulary["categories"]) == {"brand", "category"} and vocabulary["boundaries"]["price"]
    with open(os.path.join(latest, "metadata.json")) as f:
        assert json.load(f)["item_features"] == {"categorical": ["brand", "category"], "numeric": ["price"]}
    # recommend takes the shop's keys and prints titles; an unknown SKU is named, not fed.
    assert cli.main(["recommend", "--model", latest, "--history", f"{keys[3]},{keys[7]},B0NOSUCHX"]) == 0
    captured = capsys.readouterr()
    assert "B0NOSUCHX" in captured.err and "Top 10" in captured.out
