"""Training end to end on CPU with the real MiniLM: loss goes down, embeddings change, record, resume, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CHAINS, STS_ROWS, chain_record, model_dir
from rankchain_posttrain import train as train_mod
from rankchain_posttrain.errors import DataError, NonFiniteLossError
from rankchain_posttrain.losses import ChainListMLELoss
from rankchain_posttrain.modeling import encode, load_encoder

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def make_run(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "validated.jsonl", "w", encoding="utf-8") as fh:
        for i, c in enumerate(CHAINS):
            fh.write(json.dumps(chain_record(i, c)) + "\n")
    (root / "sts.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in STS_ROWS), encoding="utf-8")
    return root


def base_args(run: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(run), "--base-model", model_dir(), "--out", str(out), "--device", "cpu",
        "--batch-chains", "3", "--max-seq-length", "32", "--seed", "7", *extra,
    ]


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run (3 epochs x 2 steps, with STS eval and ONNX export), shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    run = make_run(root / "run")
    out = root / "out"
    args = train_mod.build_parser().parse_args(
        base_args(run, out, "--epochs", "3", "--lr", "5e-5", "--warmup-ratio", "0", "--eval-sts", str(run / "sts.tsv"), "--eval-every", "2",
                  "--select", "sts")
    )
    lines: list[str] = []

    class Capture:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    record = train_mod.train(args, train_mod.Progress(stream=Capture()))
    return {"run": run, "out": out, "record": record, "events": events("".join(lines))}


def chain_loss(model, teacher_emb_fn) -> float:
    sentences = [s for c in CHAINS for s in c]
    lengths = torch.tensor([len(c) for c in CHAINS])
    return ChainListMLELoss()(encode(model, sentences), teacher_emb_fn(sentences), lengths).item()


def test_issue5_short_training_lowers_loss_and_changes_embeddings(trained, minilm):
    trained_model = load_encoder(str(trained["out"] / "model"), max_seq_length=32)
    base_encode = lambda sents: encode(minilm, sents)  # noqa: E731 -- the teacher: the frozen base model
    before = chain_loss(minilm, base_encode)
    after = chain_loss(trained_model, base_encode)
    assert after < before - 1e-3, (before, after)
    probe = ["A man is playing a guitar on stage.", "The weather is sunny and warm."]
    cos = (encode(minilm, probe) * encode(trained_model, probe)).sum(-1)
    assert (cos < 0.99999).all(), cos  # weights really moved
    assert (cos > 0.9).all(), cos  # ...without wrecking the model


def test_issue5_progress_events_and_training_record(trained):
    ev = trained["events"]
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "start" and kinds[-1] == "done"
    start = ev[0]
    assert start["total"] == 6 and start["world_size"] == 1 and start["chains"] == len(CHAINS)
    steps = [e for e in ev if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    assert all(e["total"] == 6 and set(e["parts"]) == {"chain_listmle"} and e["lr"] > 0 and e["elapsed"] > 0 for e in steps)
    evals = [e for e in ev if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [0, 2, 4, 6]
    assert all(-100 <= e["stsb_spearman"] <= 100 for e in evals)

    rec = json.loads((trained["out"] / "training.json").read_text())
    assert rec["loss"]["config"] == {"chain_listmle": {"weight": 1.0, "tau": 0.05, "tau2": 0.05, "omega": 0.5, "reduction": "mean"}}
    assert "he2025refining" in rec["loss"]["citation"]["chain_listmle"]
    assert rec["data"]["chains"] == len(CHAINS) and len(rec["data"]["sha256"]) == 64
    assert rec["seed"] == 7 and rec["steps"] == 6 and rec["world_size"] == 1
    assert rec["versions"]["torch"] == torch.__version__
    assert rec["student"]["pooling"] == "mean" and rec["teacher"]["model"] == "frozen copy of the student"
    assert [h["step"] for h in rec["eval_history"]] == [0, 2, 4, 6]
    trained_scores = [h["stsb_spearman"] for h in rec["eval_history"] if h["step"] > 0]
    assert rec["best"]["stsb_spearman"] == max(trained_scores) and rec["best"]["step"] > 0  # step 0 = base model, not a candidate


def test_issue5_final_model_is_sentence_transformers_dir_with_onnx(trained):
    model = trained["out"] / "model"
    assert (model / "modules.json").is_file() and (model / "model.safetensors").is_file()
    rec = json.loads((trained["out"] / "training.json").read_text())
    if rec["final_model"]["onnx"] is None:
        pytest.skip("rankchain_posttrain.export_onnx is not importable in this checkout")
    assert (model / "onnx" / "model.onnx").is_file()
    assert rec["final_model"]["export_error"] is None


def test_issue5_resume_continues_and_refuses_changed_settings(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    common = ("--no-export", "--checkpoint-every", "1", "--lr", "1e-5", "--epochs", "2")
    assert train_mod.main(base_args(run, out, *common, "--max-steps", "1")) == 0
    first = events(capsys.readouterr().out)
    assert first[-1]["event"] == "done" and first[-1]["step"] == 1

    # same --out without --resume: refused, nothing overwritten
    assert train_mod.main(base_args(run, out, *common, "--max-steps", "2")) == 2
    assert "pass --resume" in capsys.readouterr().err

    # different settings: refused with the setting named
    assert train_mod.main(base_args(run, out, "--no-export", "--lr", "2e-5", "--epochs", "2", "--resume")) == 2
    assert "lr: checkpoint 1e-05 vs now 2e-05" in capsys.readouterr().err

    assert train_mod.main(base_args(run, out, *common, "--max-steps", "3", "--resume")) == 0
    second = events(capsys.readouterr().out)
    assert second[0]["event"] == "start" and second[0]["step"] == 1
    assert [e["step"] for e in second if e["event"] == "step"] == [2, 3]
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3


def test_issue5_non_finite_loss_stops_training(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run")

    def nan_parts(self, student_emb, teacher_emb, lengths, **_kwargs):
        return {"chain_listmle": student_emb.sum() * float("nan"), "infonce": student_emb.sum() * 0.0}

    monkeypatch.setattr(train_mod.CombinedLoss, "forward", nan_parts)
    args = train_mod.build_parser().parse_args(base_args(run, tmp_path / "out", "--no-export", "--max-steps", "2"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 1: chain_listmle=\[nan\]"):
        train_mod.train(args, train_mod.Progress(enabled=False))
    assert not (tmp_path / "out" / "model").exists()
    assert train_mod.main(base_args(run, tmp_path / "out2", "--no-export", "--max-steps", "2")) == 1
    err_event = events(capsys.readouterr().out)[-1]
    assert err_event["event"] == "error" and err_event["kind"] == "NonFiniteLossError"


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (("--lr", "-1"), "--lr must be a number > 0, got -1.0"),
        (("--loss", "chain_listmle,bogus"), "unknown loss 'bogus'"),
        (("--omega", "-0.5"), "--omega must be a number >= 0"),
        (("--encode-chunk", "-1"), "--encode-chunk must be >= 0"),
        (("--precision", "fp16"), "--precision fp16 needs CUDA"),
    ],
)
def test_bad_arguments_exit_2_with_the_value(tmp_path, capsys, extra, fragment):
    run = make_run(tmp_path / "run")
    assert train_mod.main(base_args(run, tmp_path / "out", "--no-export", "--max-steps", "1", *extra)) == 2
    assert fragment in capsys.readouterr().err


def test_issue5_bad_data_exit_2_names_file_and_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "validated.jsonl").write_text(json.dumps(chain_record(0, CHAINS[0])) + '\n{"id": "x", "anchor": 5}\n')
    assert train_mod.main(base_args(run, tmp_path / "out", "--no-export")) == 2
    err = capsys.readouterr().err
    assert 'validated.jsonl:2 (field "anchor"): expected a string, got int' in err


def test_issue5_teacher_with_its_own_pipeline_and_gradient_checkpointing(tmp_path, capsys):
    """--teacher loads a separate model (its own tokenizer/pooling; here MiniLM rebuilt with CLS pooling)."""
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    code = train_mod.main(base_args(run, out, "--no-export", "--max-steps", "1", "--teacher", model_dir(), "--teacher-pooling", "cls",
                                    "--gradient-checkpointing", "--loss", "chain_listmle:1,listnet:0.5,infonce:0.1"))
    assert code == 0, capsys.readouterr().err
    step = next(e for e in events(capsys.readouterr().out) if e["event"] == "step")
    assert set(step["parts"]) == {"chain_listmle", "listnet", "infonce"}
    rec = json.loads((out / "training.json").read_text())
    assert rec["teacher"]["model"] == model_dir() and rec["teacher"]["pooling"] == "cls"
    assert rec["student"]["pooling"] == "mean"


def test_issue5_two_process_gloo_run(tmp_path):
    """torchrun with 2 CPU processes: accelerate picks gloo, DDP syncs, one process writes the output."""
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PACKAGE_ROOT)}
    with socket.socket() as sock:  # a free port for the rendezvous (port 0 is not passed through by torchrun)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(port),
        "-m", "rankchain_posttrain.train", *base_args(run, out, "--no-export", "--batch-chains", "2", "--max-steps", "1",
                                                      "--lr", "1e-4", "--checkpoint-every", "1"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ev = events(proc.stdout)
    start = next(e for e in ev if e["event"] == "start")
    assert start["world_size"] == 2 and start["backend"] == "gloo"
    assert sum(1 for e in ev if e["event"] == "done") == 1  # only the main process reports
    assert (out / "model" / "model.safetensors").is_file()
    rec = json.loads((out / "training.json").read_text())
    assert rec["world_size"] == 2 and rec["steps"] == 1


def test_chunked_length_sorted_encoding_equals_one_batch(minilm):
    """The trainer's --encode-chunk path returns the same embeddings, in input order, as one padded batch."""
    from rankchain_posttrain.modeling import embed

    minilm.eval()
    sentences = [s for c in CHAINS[:3] for s in c]
    with torch.no_grad():
        whole = embed(minilm, sentences, torch.device("cpu"))
        chunked = embed(minilm, sentences, torch.device("cpu"), chunk_size=4)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_chain_order_loss_trains_without_a_teacher(tmp_path, capsys):
    """--loss chain_order (pure chain-order targets, issue 14) loads no teacher and records that."""
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    code = train_mod.main(base_args(run, out, "--no-export", "--max-steps", "2", "--loss", "chain_order", "--lr", "5e-5"))
    assert code == 0, capsys.readouterr().err
    steps = [e for e in events(capsys.readouterr().out) if e["event"] == "step"]
    assert [set(e["parts"]) for e in steps] == [{"chain_order"}, {"chain_order"}]
    assert all(e["loss"] > 0 for e in steps)
    rec = json.loads((out / "training.json").read_text())
    assert rec["teacher"] is None and rec["teacher_cache"] is None
    assert rec["loss"]["config"]["chain_order"]["targets"] == "chain positions only"
