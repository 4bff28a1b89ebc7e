"""`ondevice-rec report`: one self-contained HTML page from a real run and real benchmark outputs."""

import os
import re

import pytest

from ondevice_rec import cli


@pytest.mark.slow
def test_report_shows_data_quality_latency_and_lineage(two_runs, published_latency, quality_run, tmp_path, capsys):
    config, first, _ = two_runs
    latency, quality_dir = published_latency["path"], quality_run["out_dir"]
    out = tmp_path / "report.html"
    capsys.readouterr()
    assert cli.main(["report", "--output-dir", config.output_dir, "--output", str(out), "--quality", str(quality_dir / "quality.json"),
                     "--latency", str(latency)]) == 0
    page = out.read_text(encoding="utf-8")
    # Self-contained: the plot is inlined, nothing is fetched.
    assert 'src="data:image/png;base64,' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    # Lineage of the version serving: the run that published it, its blessing, its data span.
    version = os.path.basename(os.path.realpath(os.path.join(config.serving_dir, "latest")))
    assert version in page and first.run_id in page
    assert "/Evaluator/blessing/" in page and "<td>blessed</td><td>yes</td>" in page
    assert "<td>data span</td><td>0</td>" in page  # a plain folder: ExampleGen's span 0
    assert "<td>users</td><td>150</td>" in page
    # Every numeric item feature is summarised: the synthetic titles carry years.
    year = re.search(r"<td>item year min / mean / max</td><td>(\d+) / ([\d.]+) / (\d+)</td>", page)
    assert year, "the year of the titles is not summarised"
    assert 1900 <= int(year.group(1)) <= float(year.group(2)) <= int(year.group(3)) <= 2025
    # Recall table rows (baselines and the benchmark's model) and latency rows.
    assert "<td>popularity</td>" in page and "<td>markov (last item)</td>" in page and "<td>bow</td><td>5</td>" in page
    assert "<td>float16</td>" in page  # the two_runs model is published as float16


def test_report_on_a_folder_without_a_published_model_exits_2(tmp_path, capsys):
    assert cli.main(["report", "--output-dir", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert "nothing is published" in capsys.readouterr().err
