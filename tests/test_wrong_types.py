"""Every file a user hands over, with a value of the wrong JSON/YAML type anywhere: a one-line error naming
the file (and field), exit 1 or 2, never a traceback. Hypothesis draws the wrong values."""
from __future__ import annotations

import copy
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sde_datagen.cli import main
from sde_datagen.data import bundled_dir
from sde_datagen.tasks.masa import SPEC as MASA

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Values of every JSON/YAML shape, huge numbers and NaN among them.
WRONG = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=-3, max_value=3), max_size=2),
)


def paths_of(value, prefix=()):
    """Every path (keys and indices) into a nested JSON value, the root's children first."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths_of(child, (*prefix, key))


def value_at(value, path):
    for key in path:
        value = value[key]
    return value


def replaced(value, path, new):
    out = copy.deepcopy(value)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return out


def run(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)  # an exception escaping here is the traceback a user would see
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def same_type(a, b) -> bool:
    """Whether `b` is a value of `a`'s JSON type (such a draw is no mistake)."""
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):  # JSON has numbers: 0.0 is the integer 0
        return isinstance(b, int) or (math.isfinite(b) and (isinstance(a, float) or b.is_integer()))
    return type(a) is type(b) or (a is None and b is None)


# ------------------------------------------------------------------------------------------ meta.json

META = {"schema_version": 1, "base_model": {"id": "m", "revision": "r"}, "adapter": None, "design": "es-sde",
        "training": None, "seed": 0, "submitter": "me", "date": "2026-01-01"}


@EXAMPLES
@given(where=st.sampled_from(list(paths_of(META))), value=WRONG)
def test_meta_json(tmp_path_factory, capsys, where, value):
    if same_type(value_at(META, where), value):
        return
    folder = tmp_path_factory.mktemp("meta")
    meta = folder / "meta.json"
    meta.write_text(json.dumps(replaced(META, where, value)), encoding="utf-8")
    run_dir = folder / "run"
    run_dir.mkdir()
    (run_dir / "results_2026-01-01T00-00-00.json").write_text(json.dumps({"results": {"sde_ner": {}}}))
    code, said = run(capsys, ["board", "submit", str(run_dir), "--meta", str(meta), "--board", str(folder / "b")])
    assert code in (1, 2) and str(meta) in said and "Traceback" not in said


# ----------------------------------------------------------------------------------------- study.yaml

PLAN = {"model": "m", "task": "ner", "designs": ["first-nomi-lines-pu-text-none"], "seeds": [0], "train_size": 8,
        "data_seed": 0, "task_spec": None, "data": None, "chat_template": False, "eval_limit": None,
        "eval_batch_size": 8, "max_gen_toks": None, "train": {}, "analysis": True, "icl_shots": 3,
        "ppl_samples": 200, "user_tasks": None}


def whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2 ** 63


def text(v) -> bool:
    return isinstance(v, str)


def optional(check):
    return lambda v: v is None or check(v)


def list_of(check):
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


PLAN_ACCEPTS = {  # what study.yaml's documented fields take
    "model": text, "task": text, "designs": list_of(text), "seeds": list_of(whole), "train_size": optional(whole),
    "data_seed": whole, "task_spec": optional(text), "data": optional(text), "chat_template": lambda v: v in (True, False),
    "eval_limit": optional(whole), "eval_batch_size": whole, "max_gen_toks": optional(whole),
    "train": lambda v: isinstance(v, dict), "analysis": lambda v: isinstance(v, bool), "icl_shots": whole,
    "ppl_samples": whole, "user_tasks": optional(list_of(text)),
}


@EXAMPLES
@given(where=st.sampled_from(list(PLAN)), value=WRONG)
def test_study_yaml(tmp_path_factory, capsys, where, value):
    if PLAN_ACCEPTS[where](value):
        return
    folder = tmp_path_factory.mktemp("study")
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({**PLAN, where: value}), encoding="utf-8")
    code, said = run(capsys, ["study", "status", str(folder)])
    assert code == 2 and said.startswith(f"sde: error: {path}: field '{where}': expected "), said


# ----------------------------------------------------------------------------------- train config YAML

TRAIN = {"model": "m", "dataset": "d", "output": "o", "lora_r": 8, "lora_dropout": 0.1, "epochs": 1, "lr": 1e-4,
         "batch_size": 4, "max_length": 512, "seed": 0, "chat_template": False, "target_modules": "all-linear"}


@EXAMPLES
@given(where=st.sampled_from(list(TRAIN)), value=WRONG)
def test_train_config_yaml(tmp_path_factory, where, value):
    import argparse

    from sde_train.config import add_train_arguments, config_from_args
    from sde_train.errors import TrainError

    path = tmp_path_factory.mktemp("train") / "train.yaml"
    path.write_text(yaml.safe_dump({**TRAIN, where: value}), encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    try:
        config_from_args(parser.parse_args(["--config-file", str(path)]))
    except TrainError as err:
        assert str(err).startswith(f"{path}: field '{where}'") or str(err).startswith("--"), str(err)


# ---------------------------------------------------------------------------------------- task spec YAML

@EXAMPLES
@given(where=st.sampled_from([p for p in paths_of(MASA) if len(p) <= 3]), value=WRONG)
def test_task_spec_yaml(tmp_path_factory, capsys, where, value):
    if same_type(value_at(MASA, where), value):
        return
    path = tmp_path_factory.mktemp("spec") / "hotel.yaml"
    path.write_text(yaml.safe_dump(replaced(MASA, where, value), allow_unicode=True), encoding="utf-8")
    code, said = run(capsys, ["data", "show", "--task-spec", str(path), "--data", str(bundled_dir("masa")), "-n", "1"])
    assert code == 0 or (code == 2 and said.startswith(f"sde: error: {path}")), said


# --------------------------------------------------------------------------- results JSON, samples JSONL

@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    """A board with one well-formed submission shell (its checks fail, but every field has its JSON type)."""
    board = tmp_path_factory.mktemp("board")
    folder = board / "submissions" / "one"
    folder.mkdir(parents=True)
    meta = {**META, "design": "first-nomi-lines-pu-text-none"}
    results = {"results": {"sde_ner": {"f1,none": 0.5}}, "configs": {"sde_ner": {"metadata": {"design": "es-sde"}}},
               "versions": {"sde_ner": 1}, "n-shot": {"sde_ner": 0}, "n-samples": {"sde_ner": {"original": 1,
               "effective": 1}}, "higher_is_better": {"sde_ner": {"f1": True}}, "config": {"limit": None}}
    sample = {"doc_id": 0, "doc": {"prompt": "p"}, "arguments": {"gen_args_0": {"arg_0": "p"}}, "resps": [["x"]],
              "filtered_resps": ["x"], "filter": "none"}
    (folder / "submission.json").write_text(json.dumps(meta))
    return board, folder, results, sample


@EXAMPLES
@given(where=st.sampled_from([p for p in paths_of({"results": 0, "configs": 0, "versions": 0, "n-shot": 0,
                                                   "n-samples": 0, "higher_is_better": 0, "config": 0})]), value=WRONG)
def test_results_json(submission, capsys, where, value):
    board, folder, results, sample = submission
    (folder / "results.json").write_text(json.dumps(replaced(results, where, value)))
    (folder / "samples_sde_ner.jsonl").write_text(json.dumps(sample) + "\n")
    code, said = run(capsys, ["board", "validate", "--board", str(board)])
    assert code == 1 and "Traceback" not in said


@EXAMPLES
@given(where=st.sampled_from(list(paths_of({"doc_id": 0, "doc": 0, "arguments": 0, "resps": [0], "filtered_resps": [0],
                                             "filter": 0}))), value=WRONG)
def test_samples_jsonl(submission, capsys, where, value):
    board, folder, results, sample = submission
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "samples_sde_ner.jsonl").write_text(json.dumps(replaced(sample, where, value)) + "\n")
    code, said = run(capsys, ["board", "validate", "--board", str(board)])
    assert code == 1 and "Traceback" not in said


@EXAMPLES
@given(field=st.sampled_from(["prediction", "target"]), value=WRONG)
def test_score_rows(tmp_path_factory, capsys, field, value):
    path = tmp_path_factory.mktemp("score") / "rows.jsonl"
    row = {"prediction": '["protein", "IL-2"]', "target": '["protein", "IL-2"]', field: value}
    path.write_text(json.dumps({"prediction": "", "target": '["protein", "IL-2"]'}) + "\n" + json.dumps(row) + "\n")
    code, said = run(capsys, ["score", "--task", "ner", "--design", "heuristic", str(path)])
    if isinstance(value, str):
        assert code in (0, 2) and "Traceback" not in said
    else:
        assert code == 2 and said.startswith(f"sde: error: {path}:2: field '{field}'"), said
