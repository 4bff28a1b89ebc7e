"""The CLI: clear errors with exit code 2, and recommend output on a published model."""

import os
import subprocess
import sys

import pytest

from ondevice_rec import cli
from ondevice_rec.modules import ranking_metrics


def test_run_on_a_missing_folder_exits_2_with_a_clear_message(tmp_path, capsys):
    code = cli.main(["run", "--data-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")])
    assert code == cli.EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_run_on_a_folder_without_ratings_exits_2(tmp_path, capsys):
    code = cli.main(["run", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")])
    assert code == cli.EXIT_BAD_INPUT
    assert "no MovieLens ratings file" in capsys.readouterr().err


def test_make_synthetic_writes_a_named_shape_and_needs_a_format_or_a_shape(tmp_path, capsys):
    from ondevice_rec.data import event_spec
    assert cli.main(["make-synthetic", "--shape", "short-sessions", "--users", "300", "--output-dir",
                     str(tmp_path / "s")]) == 0
    assert "by 300 users" in capsys.readouterr().out
    spec = event_spec.load_spec(str(tmp_path / "s" / "events.json"))
    assert spec.timestamp is None and spec.items is not None and (tmp_path / "s" / "items.csv").exists()
    assert cli.main(["make-synthetic", "--output-dir", str(tmp_path / "t")]) == cli.EXIT_BAD_INPUT
    assert "--format or --shape" in capsys.readouterr().err


def test_make_synthetic_writes_the_requested_layout(tmp_path, capsys):
    assert cli.main(["make-synthetic", "--format", "ml-100k", "--output-dir", str(tmp_path), "--users", "30",
                     "--items", "60"]) == 0
    assert os.path.exists(tmp_path / "u.data") and os.path.exists(tmp_path / "u.item")
    assert "ml-100k layout" in capsys.readouterr().out


def test_bad_history_exits_2(tmp_path, capsys):
    assert cli.main(["recommend", "--model", str(tmp_path), "--history", "1,,3"]) == cli.EXIT_BAD_INPUT
    assert "none empty" in capsys.readouterr().err


@pytest.mark.parametrize("text, fields, message", [
    ("user;item\nu1;A\nu1;B\n", ["user=user", "item=item"], "set \"delimiter\": \";\""),
    ("customer,sku\nu1,A\n", ["user=user", "item=sku"], "the user column 'user' is not in the header"),
    ("u1,A,soon\nu1,B,later\n", ["timestamp=2", "header=no"], "column 2: timestamp 'soon' is not a number"),
])
def test_a_log_that_does_not_fit_its_spec_exits_2_before_any_component(tmp_path, capsys, text, fields, message):
    (tmp_path / "log.csv").write_text(text)
    args = ["run", "--events", str(tmp_path / "log.csv"), "--output-dir", str(tmp_path / "out")]
    assert cli.main(args + [f"--event-field={f}" for f in fields]) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "pipeline_root").exists()


def _truncated_gzip(path):
    import gzip
    data = gzip.compress(b"".join(b"u%d,I%d,%d\n" % (i % 7, i % 13, 1000 + i) for i in range(2000)))
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("name, make, message", [
    ("log.csv", lambda p: p.write_text("user,item,ts\n"), "the file has a header line and no rows: 'user,item,ts'"),
    ("log.csv", lambda p: p.write_text(""), "the file is empty"),
    ("log.csv.gz", _truncated_gzip, "the gzip file is truncated (it ends after"),
])
def test_a_log_without_rows_or_cut_short_exits_2_before_any_component(tmp_path, capsys, name, make, message):
    """The held-out probe's cases: refused before the pipeline starts, naming the file."""
    make(tmp_path / name)
    args = ["run", "--events", str(tmp_path / name), "--output-dir", str(tmp_path / "out"),
            "--event-field=user=user", "--event-field=item=item", "--event-field=timestamp=ts"]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / name) in err, err
    assert not (tmp_path / "out" / "pipeline_root").exists()


def test_a_second_run_on_a_busy_output_folder_is_refused_and_disturbs_nothing(tmp_path, capsys):
    from ondevice_rec.pipeline import runner
    out = tmp_path / "out"
    (tmp_path / "log.csv").write_text("user,item,ts\nu1,A,1\nu1,B,2\n")
    args = ["run", "--events", str(tmp_path / "log.csv"), "--output-dir", str(out), "--event-field=user=user",
            "--event-field=item=item", "--event-field=timestamp=ts"]
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ondevice_rec.pipeline import runner\n"
                               "with runner.output_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(os.listdir(out))
        assert cli.main(args) == cli.EXIT_BAD_INPUT
        captured = capsys.readouterr()
        assert f"another run is using {out} (pid {holder.pid} on " in captured.err, captured.err
        assert captured.out == "" and sorted(os.listdir(out)) == before == [runner.RUN_LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    with runner.output_lock(str(out)):  # the holder's death released it; and it is re-entrant in one process
        with runner.output_lock(str(out)):
            pass


def test_help_lists_every_command_and_is_fast():
    out = subprocess.run([sys.executable, "-m", "ondevice_rec.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("run", "retrain", "kubeflow", "recommend", "make-synthetic", "download", "benchmark"):
        assert command in out
    assert "exit codes" in out


@pytest.mark.slow
def test_recommend_prints_titles_and_skips_history(two_runs, capsys):
    config, _, _ = two_runs
    model = os.path.join(config.serving_dir, "latest")
    assert cli.main(["recommend", "--model", model, "--history", "1,2,3,2,99999", "--top-k", "5"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    ranked = [line for line in lines if line.strip()[:2].rstrip(".").isdigit()]
    assert len(ranked) == 5
    ids = [line.split()[1] for line in ranked]
    assert not {"1", "2", "3"} & set(ids)
    # Keys the model does not know and repeats are dropped and said so, never silently fed.
    assert "dropped 1 key(s) not in the model's vocabulary" in captured.err and "99999" in captured.err
    assert "dropped 1 repeated key(s)" in captured.err
    assert cli.main(["recommend", "--model", model, "--history", "no,such,keys"]) == 2


@pytest.mark.slow
def test_latency_benchmark_on_a_published_model_finds_its_saved_model(published_latency, tmp_path):
    result = published_latency["result"]
    assert result["quantization"] == "float16" and result["saved_model_dir"].endswith("Format-Serving")
    assert set(result["tflite"]) == {"1_thread", "4_thread"} and result["speedup_p50_1_thread"] > 1
    assert "| float16 |" in published_latency["printed"]
    # The reference models, timed in the same run with the same harness, and our p50 as a ratio to theirs.
    (reference,) = result["references"]
    assert reference["model"] == "stand_in_top100.tflite" and reference["history_length"] == 10
    assert reference["iterations"] == 50 and 0 < reference["p50_us"] <= reference["p90_us"]
    assert reference["ours_p50_ratio"] == pytest.approx(result["tflite"]["1_thread"]["p50_us"] / reference["p50_us"])
    assert f"| stand_in_top100.tflite | {reference['tflite_bytes']:,} |" in published_latency["printed"]
    assert cli.main(["benchmark", "latency", "--model", str(tmp_path / "nothing")]) == 2


def test_hparams_override_typed_model_settings():
    from ondevice_rec.modules.config import ModelConfig
    config = ModelConfig().with_overrides(["tie_embeddings=false", "transformer_blocks=3", "dropout=0.25",
                                           "cnn_filters=16,32", "encoder=lstm"])
    assert (config.tie_embeddings, config.transformer_blocks, config.dropout, config.cnn_filters, config.encoder) \
        == (False, 3, 0.25, (16, 32), "lstm")
    for bad, message in [("nope=1", "KEY one of"), ("dropout=high", "cannot read"), ("use_item_categories=maybe", "cannot"),
                         ("encoder=rnn", "unknown encoder")]:
        with pytest.raises(ValueError, match=message):
            ModelConfig().with_overrides([bad])


def test_bad_hparam_exits_2(tmp_path, capsys):
    data = tmp_path / "data"
    cli.main(["make-synthetic", "--format", "ml-1m", "--output-dir", str(data), "--users", "20", "--items", "40"])
    code = cli.main(["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), "--hparam", "x=1"])
    assert code == cli.EXIT_BAD_INPUT
    assert "--hparam expects KEY=VALUE" in capsys.readouterr().err


def test_latency_all_refuses_unknown_encoders_and_modes_before_any_work(capsys):
    assert cli.main(["benchmark", "latency", "--all", "--encoders", "bow,gru"]) == cli.EXIT_BAD_INPUT
    assert "gru" in capsys.readouterr().err
    assert cli.main(["benchmark", "latency", "--all", "--quantizations", "int4"]) == cli.EXIT_BAD_INPUT
    assert "int4" in capsys.readouterr().err
    assert cli.main(["benchmark", "latency", "--all", "--top-k", "0"]) == cli.EXIT_BAD_INPUT


def test_quality_benchmark_refuses_bad_settings_before_any_work(tmp_path, capsys):
    base = ["benchmark", "quality", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    assert cli.main(base + ["--encoders", "lstm,gru"]) == cli.EXIT_BAD_INPUT
    assert "'gru'" in capsys.readouterr().err
    assert cli.main(base + ["--history-lengths", "10,0"]) == cli.EXIT_BAD_INPUT
    assert "'0'" in capsys.readouterr().err
    assert cli.main(base + ["--seeds", "0"]) == cli.EXIT_BAD_INPUT
    assert "--seeds" in capsys.readouterr().err
    assert cli.main(base[:3] + [str(tmp_path / "missing")]) == cli.EXIT_BAD_INPUT
    assert "no folder" in capsys.readouterr().err
    # the cross-dataset form: every dataset and setting checked before the first one runs
    with pytest.raises(SystemExit) as exit_info:  # argparse: not a shape
        cli.main(base + ["--synthetic", "tiny-sessions"])
    assert exit_info.value.code == cli.EXIT_BAD_INPUT and "invalid choice" in capsys.readouterr().err
    assert cli.main(base + ["--data-dir", str(tmp_path / "missing")]) == cli.EXIT_BAD_INPUT
    assert "no folder" in capsys.readouterr().err
    assert cli.main(base + ["--data-dir", str(tmp_path), "--synthetic", "short-sessions"]) == cli.EXIT_BAD_INPUT
    assert "two datasets are named" in capsys.readouterr().err
    assert cli.main(base + ["--synthetic", "short-sessions", "--encoders", "gru"]) == cli.EXIT_BAD_INPUT
    assert "'gru'" in capsys.readouterr().err
    assert cli.main(base + ["--synthetic", "short-sessions", "--users", "u.txt"]) == cli.EXIT_BAD_INPUT
    assert "alone" in capsys.readouterr().err
    assert cli.main(["benchmark", "quality"]) == cli.EXIT_BAD_INPUT
    assert not (tmp_path / "out").exists()


def test_quality_benchmark_on_one_log_folder_reads_it_through_its_event_spec(tmp_path, monkeypatch):
    """A single --data-dir holding events.json (make-synthetic's plain log) is read through that spec, as in
    the cross-dataset table, not as a MovieLens folder."""
    from ondevice_rec.benchmarks import quality
    from ondevice_rec.data import synthetic
    data_dir = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=20, items=40, seed=1)),
                               str(tmp_path / "log"), "plain")
    calls = []
    monkeypatch.setattr(quality, "run", lambda data_dir, events=None, **settings: calls.append((data_dir, events)))
    assert cli.main(["benchmark", "quality", "--data-dir", data_dir, "--output-dir", str(tmp_path / "out")]) == 0
    (called_dir, spec), = calls
    assert called_dir == data_dir and spec is not None and spec.user == "user" and spec.item == "item"


def test_pipeline_flags_are_generated_from_the_config_fields(capsys):
    """Each knob is declared once: its flag, type, choices and shown default come from the dataclass field,
    and an omitted flag leaves the field's default in the assembled config."""
    from ondevice_rec.components.tflite_pusher.quantization import CHOICES as QUANTIZATION_CHOICES
    from ondevice_rec.modules.config import ENCODERS, ModelConfig
    from ondevice_rec.pipeline import options
    parser = cli.parser()
    args = parser.parse_args(["run", "--data-dir", "d", "--output-dir", "o", "--encoder", "cnn",
                              "--history-length", "7", "--quantization", "int8", "--stride", "2",
                              "--hparam", "loss_once_per_target=false"])
    config = options.config_from_args(args, args.data_dir, args.output_dir)
    assert (config.model.encoder, config.model.history_length, config.windowing.history_length) == ("cnn", 7, 7)
    assert config.windowing.stride == 2 and config.publish.quantization == "int8"
    assert config.model.epochs == ModelConfig().epochs and config.publish.keep_versions == 5
    defaults = parser.parse_args(["run", "--data-dir", "d", "--output-dir", "o"])
    default_config = options.config_from_args(defaults, "d", "o")
    assert default_config.windowing.stride == ModelConfig().default_train_stride() == 5
    assert default_config.windowing.min_timeline_length == 3
    run_parser = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    flags = {a.dest: a for a in run_parser._actions}
    assert list(flags["encoder"].choices) == list(ENCODERS)
    assert list(flags["quantization"].choices) == list(QUANTIZATION_CHOICES)
    assert "(default: 10)" in flags["history_length"].help
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--data-dir", "d", "--output-dir", "o", "--encoder", "gru"])


def test_a_preset_names_model_settings_and_the_flags_given_beside_it_win(monkeypatch):
    from ondevice_rec.modules import config as model_config
    from ondevice_rec.pipeline import options
    parser = cli.parser()
    for name, values in model_config.PRESETS.items():
        args = parser.parse_args(["run", "--data-dir", "d", "--output-dir", "o", "--preset", name])
        model = options.config_from_args(args, "d", "o").model
        assert {k: getattr(model, k) for k in values} == values, name
    monkeypatch.setitem(model_config.PRESETS, "wide", {"embedding_dim": 96, "history_length": 20, "dropout": 0.1})
    args = cli.parser().parse_args(["retrain", "--data-dir", "d", "--output-dir", "o", "--preset", "wide",
                                    "--embedding-dim", "24", "--hparam", "dropout=0.4"])
    config = options.config_from_args(args, "d", "o")
    assert (config.model.embedding_dim, config.model.dropout) == (24, 0.4)  # a flag, then --hparam, win
    assert config.model.history_length == config.windowing.history_length == 20  # the rest is the preset's
    assert config.windowing.stride == 10
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--data-dir", "d", "--output-dir", "o", "--preset", "fastest"])
    with pytest.raises(ValueError, match="unknown preset 'fastest'; choose one of default"):
        model_config.ModelConfig.preset("fastest")


@pytest.mark.parametrize("command", [
    ["run"], ["retrain"], ["kubeflow"], ["kubeflow", "compile"], ["kubeflow", "schedule"], ["recommend"], ["demo"],
    ["report"], ["evaluate"], ["make-synthetic"], ["benchmark"], ["benchmark", "windowing"], ["benchmark", "quality"],
    ["benchmark", "latency"], ["benchmark", "beam-runners"], ["download"]])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(command + ["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"ondevice-rec {command[0]}" in out.split("examples:", 1)[1]


def test_a_run_is_assembled_in_one_place_with_one_history_length():
    from ondevice_rec.components.history_windowing.windowing import WindowingOptions
    from ondevice_rec.modules.config import ModelConfig
    from ondevice_rec.pipeline.config import PROJECT_SETUP_FILE, PipelineConfig
    config = PipelineConfig.from_options("d", "o", {"history_length": 20, "encoder": "bow", "split": "temporal"},
                                         hparams=["dropout=0.1"])
    assert config.windowing.history_length == config.model.history_length == 20
    assert config.windowing.stride == 1 and config.windowing.min_timeline_length == 2  # bow's loss; temporal
    assert config.model.dropout == 0.1
    with pytest.raises(ValueError, match="unknown options: histroy_length"):
        PipelineConfig.from_options("d", "o", {"histroy_length": 20})
    with pytest.raises(ValueError, match="differs from model.history_length"):
        PipelineConfig("d", "o", model=ModelConfig(history_length=5), windowing=WindowingOptions(history_length=10))
    with pytest.raises(ValueError, match="unknown encoder"):
        PipelineConfig.from_options("d", "o", {"encoder": "gru"})
    # Each target once per epoch is counted from the default stride N/2: another stride must say so.
    with pytest.raises(ValueError, match="loss_once_per_target counts on the train stride N/2 = 5, not 1"):
        PipelineConfig.from_options("d", "o", {"stride": 1})
    assert PipelineConfig.from_options("d", "o", {"stride": 1}, ["loss_once_per_target=false"]).windowing.stride == 1
    assert PipelineConfig.from_options("d", "o", {"stride": 1, "encoder": "bow"}).windowing.stride == 1
    # Beam arguments: the local defaults fill in what the caller left out and never override what they gave.
    setup = f"--setup_file={PROJECT_SETUP_FILE}"
    assert PipelineConfig("d", "o").beam_pipeline_args() == [
        "--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1", setup]
    assert PipelineConfig("d", "o", beam_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
                          ).beam_pipeline_args() == ["--direct_num_workers=2", "--direct_running_mode=multi_processing",
                                                     "--runner=DirectRunner", setup]
    assert PipelineConfig("d", "o", beam_args=["--runner=FlinkRunner"]).beam_pipeline_args() == [
        "--runner=FlinkRunner", setup]
    assert PipelineConfig("d", "o", beam_args=["--runner=FlinkRunner", "--requirements_file", "r.txt"]
                          ).beam_pipeline_args() == ["--runner=FlinkRunner", "--requirements_file", "r.txt"]
    assert os.path.isfile(PROJECT_SETUP_FILE)
    windowing = WindowingOptions(history_length=4, split="temporal", eval_fraction=0.2)
    assert WindowingOptions.from_json(windowing.to_json()) == windowing


def test_evaluate_rescores_the_published_model_overall_and_on_listed_users(two_runs, tmp_path, capsys):
    """`evaluate OUT`: the overall figures are the version's eval.json (same function, same examples); a user
    list gives the same metrics on those users only; a list with none of the run's users is refused."""
    import json
    from ondevice_rec.pipeline import evaluation
    config, _, _ = two_runs
    with open(os.path.join(config.serving_dir, "latest", "eval.json")) as f:
        published = json.load(f)
    users = tmp_path / "users.txt"
    users.write_text("1\n2\n3\nno-such-user\n")
    result = evaluation.evaluate_published(config.output_dir, users_file=str(users))
    assert result["all"]["users"] == published["num_eval_users"]
    for key in ranking_metrics.NAMES:  # every registered metric, in eval.json and from evaluate
        assert result["all"][key] == pytest.approx(published[key], abs=1e-6)
    assert result["subset"]["users"] == 3 and result["subset"]["users_listed"] == 4
    assert cli.main(["evaluate", "--output-dir", config.output_dir, "--users", str(users)]) == 0
    printed = capsys.readouterr().out
    assert ranking_metrics.table_header() in printed
    assert f"| all | {published['num_eval_users']:,} |" in printed and "| listed in users.txt (4 listed) | 3 |" in printed
    users.write_text("no-such-user\n")
    assert cli.main(["evaluate", "--output-dir", config.output_dir, "--users", str(users)]) == 2


def test_beam_stages_never_make_tfx_package_itself_into_a_temporary_folder(monkeypatch, tmp_path):
    """TFX packages its own installation (52 MB, never deleted) for every Beam executor given no dependency
    flag; the run's arguments always carry one."""
    from tfx.components.statistics_gen.executor import Executor
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.utils import dependency_utils
    from ondevice_rec.pipeline.config import PROJECT_SETUP_FILE, PipelineConfig

    def refuse():
        raise AssertionError("TFX packaged itself into a temporary folder")
    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", refuse)
    for beam_args in ([], ["--direct_num_workers=2"], ["--runner=PortableRunner", "--job_endpoint=localhost:1"]):
        args = PipelineConfig(str(tmp_path), str(tmp_path), beam_args=beam_args).beam_pipeline_args()
        executor = Executor(BaseBeamExecutor.Context(beam_pipeline_args=args, tmp_dir=str(tmp_path)))
        assert f"--setup_file={PROJECT_SETUP_FILE}" in executor._beam_pipeline_args  # pylint: disable=protected-access


def _commands(parser, path=()):
    """``(command path, its parser)`` for every leaf command of the CLI."""
    import argparse
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access
    if not subparsers:
        yield path, parser
        return
    for name, sub in subparsers[0].choices.items():
        yield from _commands(sub, path + (name,))


def test_every_command_follows_one_grammar_documented_in_docs_cli():
    """One spelling for a folder (--output-dir), a file written (--output), a published model (--model) and a
    number of recommendations (--top-k); no positional output folder; every command documented in docs/cli.md."""
    import os
    from ondevice_rec.cli import common
    commands = list(_commands(cli.parser()))
    assert len(commands) > 15
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "cli.md")) as f:
        documented = f.read()
    for path, command in commands:
        flags = {option: action for action in command._actions for option in action.option_strings}  # pylint: disable=protected-access
        assert not set(flags) & set(common.RETIRED_FLAGS), (path, sorted(set(flags) & set(common.RETIRED_FLAGS)))
        for option, action in flags.items():
            assert option not in ("--output-file", "--outdir", "--k-top", "--output-folder"), (path, option)
            if option == common.OUTPUT_DIR:
                assert action.dest == "output_dir", path
            if option == common.OUTPUT_FILE:
                assert action.dest == "output", path
            if action.dest in ("output_dir", "output", "top_k"):
                assert option in (common.OUTPUT_DIR, common.OUTPUT_FILE, common.TOP_K), (path, option)
        positional = [a.dest for a in command._actions if not a.option_strings and a.dest != "help"]  # pylint: disable=protected-access
        assert "output_dir" not in positional, path
        assert f"`ondevice-rec {' '.join(path)}" in documented, f"docs/cli.md does not show {' '.join(path)}"


def test_every_command_that_reads_a_log_takes_the_same_data_source_and_model_options():
    """run, retrain, kubeflow compile and the benchmarks that read a log share the data-source options (one
    helper, the same help and destinations); benchmark quality's model settings are run's flags, from the same
    config fields, with the same defaults."""
    from ondevice_rec.cli import data_source
    from ondevice_rec.pipeline.options import flag_fields, flag_name
    from ondevice_rec.modules.config import ModelConfig
    commands = dict(_commands(cli.parser()))
    readers = [("run",), ("retrain",), ("kubeflow", "compile"), ("benchmark", "quality"), ("benchmark", "beam-runners")]

    def options(path):
        return {o: a for a in commands[path]._actions for o in a.option_strings}  # pylint: disable=protected-access
    reference = options(("run",))
    for path in readers:
        found = options(path)
        for flag in (data_source.DATA_DIR, data_source.EVENTS, data_source.EVENT_FIELD):
            assert flag in found, (path, flag)
            assert found[flag].dest == reference[flag].dest and found[flag].metavar == reference[flag].metavar
        assert found[data_source.EVENTS].help == reference[data_source.EVENTS].help, path
        assert found[data_source.EVENT_FIELD].help == reference[data_source.EVENT_FIELD].help, path
    quality = options(("benchmark", "quality"))
    for field in flag_fields((ModelConfig,)):
        if field.name in ("encoder", "history_length"):  # the benchmark's grid: --encoders, --history-lengths
            continue
        flag = flag_name(field)
        assert quality[flag].help == reference[flag].help and quality[flag].default is None, flag
    assert quality["--preset"].default == reference["--preset"].default


def test_events_with_a_data_dir_are_read_relative_to_it_and_event_fields_refine_a_folder_preset(tmp_path):
    from ondevice_rec.cli import data_source
    from ondevice_rec.data import synthetic
    folder = synthetic.write(synthetic.generate(synthetic.SyntheticConfig(users=20, items=40, seed=1)),
                             str(tmp_path / "ml"), "ml-1m")
    parser = cli.parser()
    args = parser.parse_args(["run", "--data-dir", folder, "--output-dir", "o", "--event-field", "min_rating=4"])
    source = data_source.resolve(args)
    assert source.data_dir == folder and source.spec.min_rating == 4 and source.spec.name == "ml-1m"
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "log.csv").write_text("u,i,t\n1,2,3\n")
    args = parser.parse_args(["run", "--data-dir", str(tmp_path / "logs"), "--events", str(tmp_path / "logs" /
                              "log.csv"), "--event-field", "user=u", "--event-field", "item=i", "--output-dir", "o"])
    source = data_source.resolve(args)
    assert (source.data_dir, source.spec.path, source.spec.user) == (str(tmp_path / "logs"), "log.csv", "u")
    with pytest.raises(ValueError, match="give --data-dir or --events or --dataset"):
        data_source.resolve(parser.parse_args(["run", "--output-dir", "o"]))
    assert cli.main(["run", "--output-dir", str(tmp_path / "o")]) == cli.EXIT_BAD_INPUT
