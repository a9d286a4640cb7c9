"""A user's mistakes through the real `sde` command: exit code, one line naming the file/line/field or
the flag, and never a traceback. Cases that need no subprocess (train settings) run in-process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sde_datagen.data import bundled_dir
from sde_datagen.tasks.masa import SPEC as MASA

SDE = str(Path(sys.executable).parent / "sde")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
HANG_GUARD = 1800  # seconds: a last resort against a hung command, never reached by a slow one


def sde(*args: str, cwd: Path | None = None, code: int = 2, **kw) -> str:
    """Run `sde`; assert the exit code and no traceback; return stderr's last line."""
    done = subprocess.run([SDE, *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=HANG_GUARD, **kw)
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def masa_spec(tmp_path: Path, name: str, **changes) -> Path:
    spec = {**MASA, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        spec.pop(key)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


SPEC_CASES = {  # name: (changes to the MASA spec, what the one-line error must say)
    "placeholder": ({"instructions": ["Judge {target} with {labels}"]}, "field 'instructions[0]': placeholder {target}"),
    "brace": ({"instructions": ["Judge {targets with {labels}"]}, "field 'instructions[0]': unbalanced brace"),
    "kv": ({"punctuation": {"kv": 5}}, "field 'punctuation.kv': expected text, got 5"),
    "record": ({"record": {"labels": ["x"]}}, "field 'record.labels': expected text"),
    "misspelled": ({"lables": MASA["labels"]}, "field 'lables': unknown key (did you mean 'labels'?)"),
    "no_targets": ({"targets": [], "domains": None}, "field 'targets': give at least one target"),
    "same_label": ({"labels": [*MASA["labels"], {**MASA["labels"][0], "code": "9"}]}, "repeats labels[0].id"),
    "empty_label": ({"labels": [{**MASA["labels"][0], "text": ""}, *MASA["labels"][1:]]},
                    "field 'labels[0].text': must not be empty"),
    "language": ({"language": "klingon"}, "field 'language': unknown language 'klingon'"),
}


def test_spec_mistakes_are_caught_when_the_spec_loads(tmp_path):
    data = bundled_dir("masa")
    for name, (changes, message) in SPEC_CASES.items():
        path = masa_spec(tmp_path, name, **changes)
        line = sde("data", "show", "--task-spec", str(path), "--data", str(data))
        assert line.startswith(f"sde: error: {path}: ") and message in line, (name, line)
    raw = tmp_path / "latin1.yaml"
    raw.write_bytes("name: masa\nfamily: classification\n# caf\xe9\n".encode("latin-1"))
    assert sde("data", "show", "--task-spec", str(raw), "--data", str(data)) == f"sde: error: {raw}:3: not UTF-8 text"


def test_bad_data_names_file_line_and_field(tmp_path):
    good = (bundled_dir("ed") / "test.jsonl").read_text(encoding="utf-8").splitlines()[0]
    row = json.loads(good)
    cases = {
        "list_type": (json.dumps({**row, "id": "new", "events": [{"type": ["Attack"], "trigger": row["text"][:3]}]}),
                      "field 'events[0].type'"),
        "surrogate": (json.dumps({**row, "id": "new", "text": "bad \ud800 text"}), "field 'text': holds a lone surrogate"),
    }
    for name, (line, message) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        for split in ("train", "valid"):
            (folder / f"{split}.jsonl").write_text(good + "\n", encoding="utf-8")
        (folder / "test.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
        err = sde("data", "export", "--task", "ed", "--data", str(folder), "--designs", "es-sde", "--out", str(tmp_path / "o"))
        assert err.startswith(f"sde: error: {folder / 'test.jsonl'}:2: ") and message in err, err
    (tmp_path / "list_type" / "test.jsonl").write_bytes(good.encode() + b"\n\xff\xfe\n")
    err = sde("data", "export", "--task", "ed", "--data", str(tmp_path / "list_type"), "--designs", "es-sde",
              "--out", str(tmp_path / "o"))
    assert err == f"sde: error: {tmp_path / 'list_type' / 'test.jsonl'}:2: not UTF-8 text"
    (tmp_path / "list_type" / "test.jsonl").write_text("", encoding="utf-8")
    assert "the test split holds no records" in sde("data", "export", "--task", "ed", "--data", str(tmp_path / "list_type"),
                                                   "--designs", "es-sde", "--out", str(tmp_path / "o"))
    (tmp_path / "list_type" / "test.jsonl").unlink()
    assert "--splits train,validation" in sde("data", "export", "--task", "ed", "--data", str(tmp_path / "list_type"),
                                              "--designs", "es-sde", "--out", str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_bad_flags_and_paths(tmp_path):
    (tmp_path / "file").write_text("x")
    export = ["data", "export", "--task", "masa", "--designs", "es-sde", "--train-size", "4", "--splits", "train"]
    assert "a part of the path is a file" in sde(*export, "--out", str(tmp_path / "file" / "x"))
    assert "not the current folder" in sde(*export, "--out", ".", cwd=tmp_path)
    assert "-n -1" in sde("data", "show", "--task", "masa", "-n", "-1")
    assert "'grid' is a design set" in sde("data", "show", "--task", "masa", "--design", "grid")
    assert "is a folder" in sde("score", "--task", "masa", "--design", "es-sde", str(tmp_path))
    rationales = tmp_path / "r.jsonl"
    rationales.write_text(json.dumps({"id": "no-such-id", "target": "食品评价", "rationale": "x"}) + "\n")
    line = sde(*export, "--designs", "last-nomi-lines-pu-text-cot", "--rationales", str(rationales), "--out", str(tmp_path / "r"))
    assert line == f"sde: error: {rationales}:1: field 'id': 'no-such-id' is no record of the exported splits"


def test_study_model_and_config_mistakes(tmp_path):
    bad_yaml = tmp_path / "train.yaml"
    bad_yaml.write_text("lr: [1\n", encoding="utf-8")
    for flag in ("--train-config", "--config-file"):  # the study's name for it, and the trainer's old one
        assert sde("train", flag, str(bad_yaml)) == f"sde train: error: config file {bad_yaml}:2: not valid YAML " \
            "(expected ',' or ']', but got '<stream end>')"
    study = ["study", "run", "--task", "ner", "--designs", "es-sde", "--out", str(tmp_path / "s")]
    assert sde(*study, "--model", "m", "--train-config", str(bad_yaml)).startswith(
        f"sde: error: --train-config: config file {bad_yaml}:2: not valid YAML")
    assert sde(*study, "--model", str(tmp_path / "no-model")).endswith("no such model folder (a local folder, or a Hub "
                                                                       "id ORG/NAME)")
    assert not (tmp_path / "s").exists()
    assert "must be at least 1" in sde("data", "export", "--task", "ner", "--designs", "es-sde", "--train-size", "-5",
                                       "--out", str(tmp_path / "e"))
    (tmp_path / "file").write_text("x")
    assert "cannot create the model folder there" in sde("models", "get", "smollm2-135m-instruct", "--out",
                                                         str(tmp_path / "file" / "m"))


def test_vllm_settings_mistakes(tmp_path, tiny_model_dir):
    """The vllm engine's settings: a flag out of range, a flag for the other engine, a study.yaml that sets one wrong."""
    study = ["study", "run", "--model", str(tiny_model_dir), "--task", "ner", "--designs", "es-sde", "--seeds", "0",
             "--out", str(tmp_path / "s")]
    assert sde(*study, "--engine", "hf", "--kv-block", "64") == ("sde: error: --kv-block, --eval-dtype and "
                                                                "--runaway-stop set the vllm engine; this study "
                                                                "evaluates with hf")
    pytest.importorskip("vllm")
    assert sde(*study, "--engine", "vllm", "--kv-block", "16") == ("sde: error: --kv-block: expected a multiple of 32 "
                                                                  "(vLLM's CPU attention takes no other), got 16")
    assert not (tmp_path / "s").exists()
    folder = tmp_path / "planned"
    folder.mkdir()
    (folder / "study.yaml").write_text(f"model: {tiny_model_dir}\ntask: ner\ndesigns: [first-nomi-lines-pu-text-none]\n"
                                       "seeds: [0]\nengine: vllm\nvllm: {kv_block: 48}\n", encoding="utf-8")
    assert sde("study", "status", str(folder)) == (f"sde: error: {folder / 'study.yaml'}: field 'vllm.kv_block': "
                                                           "expected a multiple of 32 (vLLM's CPU attention takes no "
                                                           "other), got 48")


def test_export_leaves_nothing_behind_follows_the_umask_and_survives_an_offline_push(tmp_path):
    leftover = tmp_path / ".ds.tmp-killed"
    leftover.mkdir()
    line = sde("data", "export", "--task", "masa", "--designs", "es-sde", "--train-size", "4", "--splits", "train",
               "--out", str(tmp_path / "ds"), "--push-to-hub", "someone/ds", preexec_fn=lambda: os.umask(0o027))
    assert line.startswith("sde: error: --push-to-hub someone/ds: upload failed") and "the export is complete" in line
    assert (tmp_path / "ds" / "README.md").is_file() and not leftover.exists()
    assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "ds" / "README.md").stat().st_mode & 0o777 == 0o640


def test_closed_pipe_and_ctrl_c_end_quietly(tmp_path):
    shown = subprocess.run(f"{SDE} data show --task ner --split test -n 1400 | head -n 1", shell=True,
                           capture_output=True, text=True, env=ENV, timeout=HANG_GUARD)
    assert shown.stdout.startswith("── sample 1/1400") and "Traceback" not in shown.stderr and shown.stderr == ""
    # Ctrl-C as a terminal delivers it: to a process that takes SIGINT's default (a shell running the suite in the
    # background without job control makes its children ignore it, and Python keeps an inherited "ignore")
    proc = subprocess.Popen([SDE, "data", "export", "--task", "ner", "--designs", "grid", "--out", str(tmp_path / "g")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = time.monotonic()
    while not any(tmp_path.iterdir()):  # interrupt once the export is writing its temp folder
        assert proc.poll() is None, "the export ended before it wrote anything"
        assert time.monotonic() - started < HANG_GUARD
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 130 and "Traceback" not in err and err.strip().splitlines()[-1] == "sde: interrupted"
    assert [p.name for p in tmp_path.iterdir()] == []  # the half-written export was removed


def test_board_rejects_a_malformed_meta_and_an_unusable_board(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"schema_version": 1, "base_model": "tiny", "adapter": None, "design": "es-sde",
                                "training": None, "seed": "0", "submitter": "me", "date": "2026-01-01"}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "results_2026-01-01T00-00-00.json").write_text(json.dumps({"results": {"sde_masa_id": []}}))
    done = subprocess.run([SDE, "board", "submit", str(run), "--meta", str(meta), "--board", str(tmp_path / "b")],
                          capture_output=True, text=True, env=ENV, timeout=HANG_GUARD)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{meta}: base_model: 'tiny' is not of type 'object'" in done.stderr
    assert f"{meta}: seed: '0' is not of type 'integer'" in done.stderr
    assert "not a submission folder" in subprocess.run(
        [SDE, "board", "validate", "--board", str(tmp_path / "b"), str(tmp_path / "nothing")],
        capture_output=True, text=True, env=ENV, timeout=HANG_GUARD).stdout


@pytest.mark.parametrize("settings, message", [
    ({"lr": -1.0}, "--lr must be a positive number"),
    ({"lr": float("nan")}, "--lr must be a positive number"),
    ({"lr": 0}, "--lr must be a positive number"),
    ({"epochs": float("nan")}, "--epochs must be a positive number"),
    ({"lora_alpha": 0}, "--lora-alpha must be a positive number"),
    ({"warmup_ratio": -0.1}, "--warmup-ratio must be between 0 and 1"),
    ({"lora_dropout": 1.0}, "--lora-dropout must be in [0, 1)"),
    ({"target_modules": [1, 2]}, "field 'target_modules': expected module names"),
    ({"max_length": True}, "field 'max_length': expected a whole number, got True"),
])
def test_train_settings_are_checked(tmp_path, settings, message):
    import argparse

    from sde_train.config import add_train_arguments, config_from_args
    from sde_train.errors import TrainError

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": "m", "dataset": "d", "output": "o", **settings}))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    with pytest.raises(TrainError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config_from_args(parser.parse_args(["--config-file", str(config)]))


def test_train_output_model_and_max_length_are_checked(tiny_model_dir, tiny_dataset_dir, tmp_path):
    from sde_train.config import TrainConfig
    from sde_train.errors import TrainError
    from sde_train.trainer import train

    base = dict(model=str(tiny_model_dir), dataset=str(tiny_dataset_dir), config="first-nomi-lines-pu-text-none",
                max_steps=1)
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "adapter_config.json").write_text("{}")
    with pytest.raises(TrainError, match="holds another run's adapter; pass --overwrite"):
        train(TrainConfig(**base, output=str(other)).check())
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match=r"holds other files \(notes.txt, other-run\)"):
        train(TrainConfig(**base, output=str(tmp_path)).check())
    with pytest.raises(TrainError, match="notes.txt is a file, not a folder"):
        train(TrainConfig(**base, output=str(tmp_path / "notes.txt" / "x")).check())
    with pytest.raises(TrainError, match="--model /no/such/model: no such model folder or Hub id"):
        train(TrainConfig(**{**base, "model": "/no/such/model"}, output=str(tmp_path / "a")).check())
    with pytest.raises(TrainError, match="--max-length 8 cuts 24 of 24 samples"):
        train(TrainConfig(**base, output=str(tmp_path / "b"), max_length=8).check())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
