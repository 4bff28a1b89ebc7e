"""The benchmark commands run end to end at a small size and report what they measured."""

import json
import os
import tempfile

import pytest

from ondevice_rec.modules import trainer
from ondevice_rec.benchmarks import anchors, quality, windowing
from ondevice_rec.modules.config import ModelConfig


def test_windowing_benchmark_checks_identity_writes_json_and_deletes_its_temporary_folder(tmp_path, monkeypatch):
    out = tmp_path / "windowing.json"
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    folders = []
    result = windowing.run(ratings=6000, out_json=str(out), report=folders.append,
                           beam_args=["--direct_running_mode=in_memory"])
    # it ran in a temporary folder (named in its first line) and deleted it, the JSON written elsewhere stays
    assert f" in {temporary}{os.sep}ondevice-rec-bench-" in folders[0]
    assert not [name for name in os.listdir(temporary) if name.startswith("ondevice-rec-bench-")]
    assert result["identical"] is True
    assert result["examples"]["test"] == result["users"] == result["examples"]["eval"]
    assert result["beam_windowing_seconds"] > 0 and result["reference_seconds"] > 0
    assert json.loads(out.read_text())["beam_to_reference_ratio"] == result["beam_to_reference_ratio"]


def test_quality_benchmark_writes_json_table_and_plot(quality_run):
    result, tmp_out = quality_run["result"], quality_run["out_dir"]
    for name in ("quality.json", "quality.md", "quality.png"):
        assert os.path.getsize(tmp_out / name) > 0
    assert set(result["baselines"]) == {"popularity", "markov (last item)", "markov (last 3 items)"}
    (model,) = result["models"]
    assert model["encoder"] == "bow" and model["history_length"] == 5
    # On data with strong sequential structure both the model and the Markov chain beat popularity.
    assert model["recall@10"] > result["baselines"]["popularity"]["recall@10"]
    assert result["baselines"]["markov (last item)"]["recall@10"] > result["baselines"]["popularity"]["recall@10"]
    table = (tmp_out / "quality.md").read_text()
    assert "| bow | 5 |" in table and "| popularity |" in table
    # The listed users (ids 1..50) are scored apart, and how training ended is recorded per model.
    assert model["listed_users"] == 50 and 0 <= model["listed_recall@10"] <= 1
    assert "recall@10, listed users |" in table and model["stopped_by"] and model["epochs_run"] <= 3


def test_quality_benchmark_averages_over_seeds(quality_run, tmp_path, monkeypatch):
    data_dir = quality_run["data_dir"]  # and its work folder: the data stages come from the cache
    fit, trained_seeds = trainer.fit, []  # the Trainer's own entry point trains the benchmark's models
    monkeypatch.setattr(trainer, "fit",
                        lambda config, *a, **k: trained_seeds.append(config.seed) or fit(config, *a, **k))
    result = quality.run(data_dir, encoders=["bow"], history_lengths=[5], out_dir=str(tmp_path / "out"),
                         base=ModelConfig(embedding_dim=8, epochs=2, seed=3), seeds=2, work_dir=quality_run["work_dir"],
                         report=lambda _: None)
    (model,) = result["models"]
    assert trained_seeds == [3, 4] and model["seeds"] == [3, 4] and len(model["epochs_run"]) == 2
    per_seed = model["recall@10_per_seed"]
    assert model["recall@10"] == pytest.approx(sum(per_seed) / 2)
    assert model["recall@10_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    assert f"{model['recall@10']:.4f} ± {model['recall@10_std']:.4f}" in (tmp_path / "out" / "quality.md").read_text()
    with pytest.raises(ValueError, match="seeds"):
        quality.run(data_dir, encoders=["bow"], history_lengths=[5], out_dir=str(tmp_path / "out2"), seeds=0)


def test_latency_benchmark_measures_every_mode_against_the_saved_model(tmp_path):
    from ondevice_rec.benchmarks import latency
    out = tmp_path / "latency.json"
    result = latency.run_all(work_dir=str(tmp_path / "work"), encoders=["cnn"], quantizations=("float32", "dynamic"),
                             items=200, users=300, iterations=60, top_k=20, out=str(out), report=lambda _: None)
    float32, dynamic = result["models"]
    assert float32["top_k"] == 20
    reference = result["reference"]  # the floor any top-K model pays: call overhead and TOPK_V2 alone
    assert reference["top_k"] == 20 and reference["vocabulary_size"] == result["vocabulary_size"]
    assert 0 < reference["identity_p50_us"] and 0 < reference["topk_only_p50_us"]
    assert (float32["quantization"], dynamic["quantization"]) == ("float32", "dynamic")
    for entry in (float32, dynamic):
        for timing in entry["tflite"].values():
            assert timing["iterations"] == (20 if timing["oversubscribed"] else 60)
            assert 0 < timing["p50_us"] <= timing["p90_us"] <= timing["p99_us"]
        assert entry["speedup_p50_1_thread"] > 1  # the interpreter beats the eager SavedModel call
        assert 0 <= entry["recall@10"] <= 1
    assert dynamic["tflite_bytes"] < float32["tflite_bytes"]
    assert float32["parity"]["parity_top10_overlap"] >= 0.99
    assert json.loads(out.read_text())["models"][1]["quantization"] == "dynamic"
    assert "| cnn | dynamic |" in latency.format_table(result["models"])


def test_benchmark_overrides_apply_to_every_encoder_or_to_the_named_one():
    overrides = ["dropout=0.2", "bow:batch_size=256", "transformer:transformer_blocks=3"]
    assert quality.overrides_for("bow", overrides) == ["dropout=0.2", "batch_size=256"]
    assert quality.overrides_for("lstm", overrides) == ["dropout=0.2"]
    assert quality.overrides_for("transformer", overrides) == ["dropout=0.2", "transformer_blocks=3"]


@pytest.mark.slow
def test_the_benchmark_trains_on_the_pipelines_own_examples(two_runs, small_ml1m_dir, tmp_path):
    """The benchmark's train / eval / test examples are the Transform component's of a pipeline run with the
    default options (N=10, train stride N/2 = 5), record for record, with the same vocabulary."""
    import collections
    from ondevice_rec.benchmarks.data import WindowedSplit
    from ondevice_rec.modules.features import read_split
    from ondevice_rec.pipeline import mlmd
    from ondevice_rec.pipeline.nodes import Nodes
    config, first, _ = two_runs
    pipeline_examples = mlmd.Store(config.metadata_path).run_artifact(first.run_id, "Examples", Nodes.TRANSFORM).uri
    benchmark = WindowedSplit(small_ml1m_dir, str(tmp_path / "work"), ModelConfig())
    assert benchmark.stride == config.windowing.stride == 5
    import tensorflow as tf

    def canonical(uri, split):  # Transform writes each example's feature map in no fixed order
        return collections.Counter(tf.train.Example.FromString(r).SerializeToString(deterministic=True)
                                   for r in read_split(uri, split))
    for split in ("train", "eval", "test"):
        ours, theirs = canonical(benchmark.examples_uri, split), canonical(pipeline_examples, split)
        assert ours == theirs and sum(ours.values()) > 0, split
    published = type(benchmark.vocab).load(os.path.join(config.serving_dir, "latest"))
    assert benchmark.vocab.to_json() == published.to_json()


def test_the_2020_models_are_timed_with_the_same_harness_when_present():
    """Real-data test: the seed's two published models (../shared/models/seed-2020), timed as ours are."""
    from ondevice_rec.benchmarks import latency
    if not os.path.isdir(latency.REFERENCE_MODELS_DIR):
        pytest.skip(f"{latency.REFERENCE_MODELS_DIR} is absent")
    results = latency.reference_models(latency.REFERENCE_MODELS_DIR, iterations=100, warmup=10)
    assert {r["model"] for r in results} == {"model_history10_top100.tflite", "recommendation_rnn_i10o100.tflite"}
    for r in results:
        assert r["history_length"] == 10 and 500_000 < r["tflite_bytes"] < 530_000 and r["p50_us"] > 0


def test_the_cross_dataset_benchmark_generates_a_shape_and_tables_its_best_model_next_to_markov(tmp_path,
                                                                                                monkeypatch):
    from ondevice_rec.data import synthetic
    tiny = synthetic.Shape(synthetic.SyntheticConfig(users=150, items=120, mean_ratings_per_user=12,
                                                     min_ratings_per_user=3, max_ratings_per_user=15, clusters=8,
                                                     successors=3, follow=0.6), synthetic.PLAIN, categories=True)
    monkeypatch.setitem(synthetic.SHAPES, "tiny", tiny)
    monkeypatch.setitem(anchors.PUBLISHED, "tiny", (anchors.Anchor("A", 0.25, 0.125, "a paper"),
                                                    anchors.Anchor("B", 0.5, None, "a README")))
    out, work = tmp_path / "out", tmp_path / "work"
    table = quality.run_datasets(["synthetic:tiny"], out_dir=str(out), work_dir=str(work), report=lambda _: None,
                                 encoders=["bow"], history_lengths=[5], ablations=["user_balance=1"],
                                 base=ModelConfig(embedding_dim=16, epochs=3, batch_size=64, learning_rate=0.005))
    (row,) = table["datasets"]
    data = work / "tiny" / "data"
    assert (data / "items.csv").exists()  # generated with the shape's categories, read through its spec
    assert row["dataset"] == "tiny" and row["users"] == 150
    assert row["events"] == len((data / "events.csv").read_text().splitlines()) - 1
    # the training vocabulary: an item seen only as an eval or test target is not in it
    assert 0.9 * 120 <= row["items"] <= len({line.split(",")[1] for line in (data / "events.csv").read_text(
        ).splitlines()[1:]})
    assert row["markov_last_3"] > row["popularity"]
    assert row["best"]["encoder"] == "bow" and row["best"]["history_length"] == 5
    assert row["best_to_markov"] == round(row["best"]["recall@10"] / row["markov_last_3"], 3)
    assert json.loads((out / "datasets.json").read_text()) == json.loads(json.dumps(table))
    assert "| tiny | " in (out / "datasets.md").read_text()
    # next to the best published result (the highest of the dataset's anchors), and every published row
    assert row["best_to_published"] == round(row["best"]["recall@10"] / 0.5, 3)
    assert row["published_on"] == "all users" and [a["model"] for a in row["published"]] == ["A", "B"]
    markdown = (out / "datasets.md").read_text()
    assert f"| B 0.5000 | {row['best_to_published']:.2f} |" in markdown
    assert "- tiny, published HR@10 / NDCG@10 on all users: A 0.2500 / 0.1250 (a paper); B 0.5000 (a README)" in markdown
    default, balanced = json.loads((out / "tiny" / "quality.json").read_text())["models"]
    assert default["recall@10"] == row["best"]["recall@10"] and default["variant"] == "default"
    # The ablation: the default model and the same with one setting changed, each a row of its own table.
    assert balanced["variant"] == "user_balance=1" and balanced["settings"] == {"user_balance": 1.0}
    assert row["ablation"]["user_balance=1"]["recall@10"] == balanced["recall@10"]
    change = 100 * (balanced["recall@10"] / default["recall@10"] - 1)
    assert f"| user_balance=1 | {balanced['recall@10']:.4f} ({balanced['ndcg@10']:.4f}) {change:+.1f} % |" in markdown
    with pytest.raises(ValueError, match="--ablation expects KEY=VALUE with KEY one of"):
        quality.variants(["no_such_setting=1"])
    with pytest.raises(ValueError, match="--ablation user_balance: cannot read 'x' as float"):
        quality.variants(["user_balance=x"])


def test_a_folder_of_datasets_expands_to_the_datasets_in_it_and_each_reads_its_own_users_file(tmp_path):
    """``--data-dir ../shared/data`` benchmarks every dataset inside, by name; a dataset folder's own list of the
    users its published protocol is exact on is found by itself."""
    for name, files in {"b-log": ["events.json"], "a-movielens": ["u.data"], "notes": ["README.md"]}.items():
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_text("x")
    (tmp_path / "a-movielens" / anchors.USERS_FILE).write_text("1\n")
    assert quality.expand_datasets([str(tmp_path), "synthetic:tiny"]) == [
        str(tmp_path / "a-movielens"), str(tmp_path / "b-log"), "synthetic:tiny"]
    assert quality.expand_datasets([str(tmp_path / "b-log")]) == [str(tmp_path / "b-log")]  # a dataset itself
    assert anchors.users_file(str(tmp_path / "a-movielens")).endswith(anchors.USERS_FILE)
    assert anchors.users_file(str(tmp_path / "b-log")) == ""
    assert quality.expand_datasets([str(tmp_path / "notes")]) == [str(tmp_path / "notes")]  # read: it says why
    assert anchors.best("amazon-toys").recall_at_10 == max(a.recall_at_10 for a in anchors.published("amazon-toys"))
    assert anchors.best("no-such-set") is None


@pytest.mark.slow
def test_the_personal_benchmark_replays_the_published_model_as_the_evaluator_scores_it(two_runs, tmp_path, capsys):
    """`benchmark personal`: the replay on the published .tflite scores what the test Evaluator published (the
    app's seen-item filter ranks as the Evaluator's masking); with the state, every user's picks went through
    update_state, each call timed; the JSON holds both columns."""
    from ondevice_rec import cli
    from ondevice_rec.benchmarks import personal
    config, _, _ = two_runs
    version = os.path.join(config.serving_dir, "latest")
    with open(os.path.join(version, "eval.json")) as f:
        published = json.load(f)
    with open(os.path.join(version, "metadata.json")) as f:
        stateful = "personal_state" in json.load(f)
    out = tmp_path / "personal.json"
    assert cli.main(["benchmark", "personal", "--output-dir", config.output_dir, "--output", str(out)]) == 0
    result = json.loads(out.read_text())["all"]
    assert result["examples"] == published["num_eval_users"]
    # The Evaluator's serving_default folds each user's earlier items into the state (all of them here: the
    # synthetic users have fewer than personal_history); TFLite and the SavedModel may part on a near-tie.
    scored = result[personal.PERSONAL if stateful else personal.PLAIN]["recall@10"]
    assert scored == pytest.approx(published["recall@10"], abs=2.5 / published["num_eval_users"])
    if stateful:
        assert result["picks"] > result["examples"] and result["update_p50_us"] > 0
        assert set(result[personal.PERSONAL]) == set(result[personal.PLAIN])
    assert "recall@10 without" in capsys.readouterr().out


def test_the_label_rank_skips_seen_items_and_misses_beyond_the_list():
    import numpy as np
    from ondevice_rec.benchmarks.personal import rank_in
    top = np.array([5, 3, 9, 7])
    assert rank_in(top, 9, seen=set()) == 2
    assert rank_in(top, 9, seen={3}) == 1  # a seen item above it does not count
    assert rank_in(top, 8, seen=set()) == 4 and rank_in(top, 0, seen=set()) == 4  # absent, or unknown: a miss
