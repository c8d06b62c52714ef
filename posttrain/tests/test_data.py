"""Chain and STS loading: what is kept, and clear errors (file:line, field) for malformed or empty data."""

from __future__ import annotations

import json

import pytest

from conftest import CHAINS, chain_record
from rankchain_posttrain.data import load_chains, load_sts
from rankchain_posttrain.errors import DataError


def write_lines(path, lines):
    path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    return path


def test_loads_accepted_and_repaired_and_skips_rejected(run_dir):
    data = load_chains(str(run_dir))
    assert data.file.endswith("validated.jsonl")
    assert [c.id for c in data.chains] == [f"c{i}" for i in range(len(CHAINS))]
    assert data.chains[0].sentences == tuple(CHAINS[0])
    assert data.stats["skipped"]["rejected"] == 1
    assert data.stats["sentences"] == sum(len(c) for c in CHAINS)
    assert len(data.sha256) == 64


def test_steps_kept_cuts_the_chain(tmp_path):
    f = write_lines(tmp_path / "v.jsonl", [
        json.dumps(chain_record(0, CHAINS[0], status="repaired", steps_kept=2)),
        json.dumps(chain_record(1, CHAINS[1], status="accepted", steps_kept=0)),
    ])
    data = load_chains(str(f))
    assert [c.sentences for c in data.chains] == [tuple(CHAINS[0][:3])]
    assert data.stats["skipped"]["too_short"] == 1


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("{not json", ":2: not valid JSON"),
        (json.dumps({"anchor": "a", "steps": ["b"]}), ':2 (field "id"): missing'),
        (json.dumps({**chain_record(5, ["a", "b"]), "anchor": ""}), ':2 (field "anchor"): is empty'),
        (json.dumps({**chain_record(5, ["a", "b"]), "steps": "b"}), ':2 (field "steps"): expected a list of strings, got str'),
        (json.dumps({**chain_record(5, ["a", "b"]), "steps": ["b", 3]}), ':2 (field "steps[1]"): expected a string, got int'),
        (json.dumps(chain_record(5, ["a", "b"], status="maybe")), ':2 (field "validation.status")'),
        (json.dumps(chain_record(5, ["a", "b", "c"], steps_kept=7)), ':2 (field "validation.steps_kept"): expected an integer from 0 to 2'),
        (json.dumps(chain_record(0, ["a", "b"])), ':2 (field "id"): duplicate chain id'),
        ("[1, 2]", ":2: expected a JSON object, got list"),
    ],
)
def test_issue5_malformed_record_names_line_and_field(tmp_path, line, fragment):
    f = write_lines(tmp_path / "validated.jsonl", [json.dumps(chain_record(0, CHAINS[0])), line])
    with pytest.raises(DataError) as info:
        load_chains(str(f))
    assert info.value.exit_code == 2
    assert str(f) in str(info.value)
    assert fragment in str(info.value)


def test_issue5_empty_data_is_a_clear_error(tmp_path):
    f = write_lines(tmp_path / "validated.jsonl", [])
    with pytest.raises(DataError, match="no usable chains.*found 0 of 0 record"):
        load_chains(str(f))
    f2 = write_lines(tmp_path / "only-rejected.jsonl", [json.dumps(chain_record(0, CHAINS[0], status="rejected"))])
    with pytest.raises(DataError, match=r"1 rejected"):
        load_chains(str(f2))


def test_unvalidated_chains_need_the_flag(tmp_path):
    rec = chain_record(0, CHAINS[0])
    del rec["validation"]
    run = tmp_path / "run"
    run.mkdir()
    write_lines(run / "chains.jsonl", [json.dumps(rec)])
    with pytest.raises(DataError, match="run `rankchain validate`.*--allow-unvalidated"):
        load_chains(str(run))
    assert len(load_chains(str(run), allow_unvalidated=True).chains) == 1
    with pytest.raises(DataError, match="--allow-unvalidated"):
        load_chains(str(run / "chains.jsonl"))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such run directory or file"):
        load_chains(str(tmp_path / "nope"))


def test_sts_loading_and_errors(sts_file, tmp_path):
    sts = load_sts(str(sts_file))
    assert len(sts.scores) == 10 and sts.scores[0] == 4.8
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\na\tb\tfive\n", encoding="utf-8")
    with pytest.raises(DataError, match=r'bad.tsv:2 \(field "score"\): expected a number'):
        load_sts(str(bad))
    no_header = tmp_path / "nohead.tsv"
    no_header.write_text("a\tb\t1.0\n", encoding="utf-8")
    with pytest.raises(DataError, match="header must name"):
        load_sts(str(no_header))
