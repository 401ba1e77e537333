"""`xsearch model list|info` for every family, and `--model` where an index is created."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from xsearch.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_model_list_names_each_model_with_its_facts():
    result = invoke("model", "list", "--json")
    assert result.exit_code == 0, result.output
    cards = {c["name"]: c for c in map(json.loads, result.stdout.splitlines())}
    assert cards["laion-clap"]["modalities"] == ["audio", "text"]
    assert cards["laion-clap"]["dim"] == 512 and cards["laion-clap"]["licence"] == "CC0-1.0"
    assert cards["laion-clap"]["weights"] == ["630k-audioset-best", "630k-best"]
    assert cards["msclap-2023"]["family"] == "msclap" and cards["msclap-2023"]["dim"] == 1024
    assert cards["audioclip"]["weights"] == ["full", "partial"]
    table = invoke("model", "list")
    assert table.exit_code == 0 and "msclap-2023" in table.stdout


def test_model_info_counts_the_official_parameters_of_each_clap_model():
    # the official key lists: 158,760,796 values for LAION-CLAP less the 514 position ids
    # the package deletes before loading; 159,865,177 for Microsoft CLAP 2023
    for model, count in (("laion-clap", 158_760_282), ("msclap-2023", 159_865_177)):
        result = invoke("model", "info", "-w", "random", "--model", model, "--json")
        assert result.exit_code == 0, result.output
        facts = json.loads(result.stdout)
        assert facts["parameters"] == count and facts["config"] == model


def test_unknown_model_is_one_line_with_the_known_names(tmp_path):
    result = invoke("ingest", str(tmp_path), "--model", "clapp", "-w", "random")
    assert result.exit_code == 2
    assert "unknown model 'clapp'; known models:" in result.output
    assert "Traceback" not in result.output
