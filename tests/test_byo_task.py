"""Your own task, evaluated like the built-in ones (issue 9, bar byo-task).

A classification and an extraction task the package has never seen (spec and data written by
conftest.write_user_tasks) are exported, get an lm-eval task folder, run under the real
`lm_eval --include_path` CLI on the tiny model, and their gold scores 1.0 with no format error
through `sde score --task-spec`; lm-eval's metrics equal `sde score` on the logged outputs.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import pyarrow.parquet as pq

from sde_datagen.cli import main
from sde_datagen.families import FAMILIES
from sde_tasks.make_task import write_task_folder
from sde_tasks.tasks.utils import UserTask
from test_tasks_lm_eval import BIN, results_and_samples, run

FAMILY_METRICS = {"classification": FAMILIES["classification"].metrics, "extraction": FAMILIES["extraction"].metrics}


def sde(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "sde"), *map(str, args)], capture_output=True, text=True, timeout=300)


def score(tmp_path: Path, spec: Path, design: str, rows: list[dict], *extra: str) -> dict:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    proc = sde("score", "--task-spec", spec, "--design", design, *extra, path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result.pop("rule") == "paper" and result.pop("runaway_rate") == 0.0  # gold answers never loop
    for key in ("collapsed", "top_answer_share"):
        result.pop(key)
    return result


@pytest.fixture(scope="module")
def task_root(user_tasks, tmp_path_factory) -> Path:
    """Both user tasks' lm-eval folders under one include path, written by the CLI."""
    root = tmp_path_factory.mktemp("my_tasks")
    for spec, data in user_tasks.values():
        proc = sde("eval", "make-task", "--task-spec", spec, "--data", data, "--out", root / spec.stem)
        assert proc.returncode == 0, proc.stderr
    return root


def test_make_task_writes_an_lm_eval_folder_per_spec(user_tasks, task_root):
    hotel, drug = task_root / "hotel", task_root / "drug_events"
    assert sorted(p.name for p in hotel.glob("*.yaml")) == ["sde_hotel.yaml", "sde_hotel_ood.yaml", "task_spec.yaml"]
    assert sorted(p.name for p in drug.glob("sde_*.yaml")) == ["sde_drug_events.yaml"]  # no domains: no _ood
    assert (hotel / "task_spec.yaml").read_bytes() == user_tasks["classification"][0].read_bytes()
    assert sorted(p.name for p in (hotel / "data").iterdir()) == ["dev.jsonl", "test.jsonl"]
    assert not [p for p in task_root.iterdir() if p.name.startswith(".")]  # no temporary folder left
    docs = UserTask.beside(str(hotel / "utils.py")).load_docs(sde_domain="area", sde_out_of_domain=True)
    assert "location" in docs["test"][0]["prompt"] and "room" not in docs["test"][0]["prompt"].split("\n")[0]


OLD_UTILS = '''from sde_tasks.metrics import accuracy, exact_match, f1, format_error_rate, precision, recall  # noqa: F401
from sde_tasks.tasks.utils import UserTask

_task = UserTask.beside(__file__)
load_docs, process_results, kappa = _task.load_docs, _task.process_results, _task.kappa
'''


@pytest.mark.parametrize("written_by", ["this version", "an earlier version"])
def test_a_task_folders_aggregations_are_its_familys(task_root, tmp_path, written_by):
    """utils.<metric> of every metric the YAMLs name, in folders written now and before (their utils.py differ)."""
    import importlib.util
    import shutil

    import yaml

    folder = shutil.copytree(task_root / "hotel", tmp_path / "hotel")
    if written_by == "an earlier version":
        (folder / "utils.py").write_text(OLD_UTILS, encoding="utf-8")
    module_spec = importlib.util.spec_from_file_location("utils", folder / "utils.py")
    utils = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(utils)
    pairs = [[("pos", "pos"), ("neg", "none")], [("none", "none"), ("pos", "neg")]]
    for entry in yaml.load((folder / "sde_hotel.yaml").read_text(), Loader=yaml.BaseLoader)["metric_list"]:
        name = entry["aggregation"].split("utils.", 1)[1]
        aggregate = getattr(utils, name)
        items = [1, 0] if entry["metric"] == "format_error_rate" else pairs
        assert isinstance(aggregate(items), float), entry
    assert utils.kappa(pairs) == pytest.approx(FAMILIES["classification"].aggregations(("pos", "neg", "none"))["kappa"](pairs))


def test_user_tasks_run_under_the_real_lm_eval_cli_and_match_sde_score(user_tasks, task_root, tiny_model_dir,
                                                                        tmp_path):
    tasks = ["sde_hotel", "sde_hotel_ood", "sde_drug_events"]
    run([str(BIN / "lm_eval"), "--include_path", str(task_root), "--tasks", ",".join(tasks), "--model", "hf",
         "--model_args", f"pretrained={tiny_model_dir}", "--device", "cpu", "--gen_kwargs", "max_gen_toks=4",
         "--metadata", '{"design": "ew-sde"}', "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    results, samples = results_and_samples(tmp_path / "out")
    for task, family, domain in (("sde_hotel", "classification", "stay"), ("sde_hotel_ood", "classification", "area"),
                                 ("sde_drug_events", "extraction", None)):
        assert results["configs"][task]["metadata"]["design"] == "ew-sde"
        assert results["n-samples"][task]["effective"] == 5  # the whole test split
        values = {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",none")}
        rows = [{"prediction": s["filtered_resps"][0], "target": s["doc"]["completion"]} for s in samples[task]]
        spec = user_tasks[family][0]
        scored = score(tmp_path, spec, "ew-sde", rows, *(["--domain", domain] if domain else []))
        assert scored.pop("n") == 5
        assert list(scored) == list(FAMILY_METRICS[family])
        assert scored == pytest.approx({k: values[k] for k in scored}), task  # same metrics, same values

    # The board takes the run when it carries the specs: hash checked, metrics recomputed from them.
    from sde_tasks.board.submit import submit
    from sde_tasks.board.validate import validate_board

    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"schema_version": 1, "base_model": {"id": "tiny", "revision": "local"}, "adapter": None,
                                "design": "ew-sde", "training": None, "seed": 0, "submitter": "test",
                                "date": "2026-01-01"}))
    specs = [user_tasks["classification"][0], user_tasks["extraction"][0]]
    board = tmp_path / "board"
    path, failures = submit(tmp_path / "out", meta, board, specs[:1])
    assert path is None and any("sde_drug_events: not in the installed task pack" in f for f in failures)
    edited = tmp_path / "edited.yaml"
    edited.write_text(specs[1].read_text() + "# changed\n")
    path, failures = submit(tmp_path / "out", meta, board, [specs[0], edited])
    assert path is None and failures == [f"--task-spec {edited}: no task of the run was evaluated with this spec"]
    path, failures = submit(tmp_path / "out", meta, board, specs)
    assert failures == [] and sorted(p.name for p in path.glob("task_spec_*")) == [f"task_spec_{t}.yaml" for t in sorted(tasks)]
    samples_file = path / "samples_sde_drug_events.jsonl"
    lines = samples_file.read_text().splitlines()
    sample = json.loads(lines[0])
    sample["filtered_resps"] = [sample["doc"]["completion"]]  # a better answer than the run's, same metrics claimed
    sample["resps"] = [[sample["doc"]["completion"]]]
    samples_file.write_text("\n".join([json.dumps(sample), *lines[1:]]) + "\n")
    (failed,) = validate_board(board).values()
    assert any(f.startswith("task sde_drug_events: reported") for f in failed), failed


@pytest.mark.parametrize("family", ["classification", "extraction"])
def test_exported_gold_scores_perfectly_through_sde_score(user_tasks, tmp_path, family):
    spec, data = user_tasks[family]
    designs = "es-sde,ew-sde,first-mi-json-pu-numeric-cot,last-nomi-lines-ou-text-rcot" + (
        ",heuristic" if family == "extraction" else "")
    assert main(["data", "export", "--task-spec", str(spec), "--data", str(data), "--designs", designs,
                 "--out", str(tmp_path / "export")]) == 0
    for design in designs.split(","):
        from sde_datagen.design import resolve_design

        variant = resolve_design(design).id
        # Read from the export's files: `datasets.load_dataset(folder)` caches by the folder's name.
        completions = pq.read_table(tmp_path / "export" / variant / "test.parquet").column("completion").to_pylist()
        rows = [{"prediction": c, "target": c} for c in completions]
        domain = ["--domain", "stay"] if family == "classification" else []  # ou designs list present targets only
        result = score(tmp_path, spec, design, rows, *domain)
        assert result.pop("n") == len(rows) == 5
        assert result.pop("format_error_rate") == 0.0, (design, result)
        assert result == {k: 1.0 for k in FAMILY_METRICS[family] if k != "format_error_rate"}, design


def test_make_task_errors_are_one_line_and_leave_nothing(user_tasks, tmp_path):
    spec, data = user_tasks["classification"]
    renamed = tmp_path / "ed.yaml"
    renamed.write_text(spec.read_text().replace("name: hotel", "name: ed"))
    bad_data = tmp_path / "bad"
    bad_data.mkdir()
    (bad_data / "test.jsonl").write_text((data / "test.jsonl").read_text().replace('"room": "pos"', '"room": "ok"'))
    (bad_data / "dev.jsonl").write_text((data / "valid.jsonl").read_text())
    train_only = tmp_path / "train_only"
    train_only.mkdir()
    (train_only / "train.jsonl").write_text((data / "train.jsonl").read_text())
    out = tmp_path / "out"
    cases = [
        (renamed, data, "field 'name': 'ed' is a built-in task"),
        (spec, bad_data, "test.jsonl:3: field 'labels.room': 'ok' is not a label"),
        (spec, train_only, "no test.jsonl: the lm-eval task needs the test split"),
        (spec, bad_data.parent / "none", "no such folder"),
        (tmp_path / "missing.yaml", data, "task spec not found"),
    ]
    for spec_path, data_dir, message in cases:
        proc = sde("eval", "make-task", "--task-spec", spec_path, "--data", data_dir, "--out", out)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "ed.yaml", "train_only"]  # nothing half-written
    assert write_task_folder(spec, data, out) == ["sde_hotel", "sde_hotel_ood"]
    proc = sde("eval", "make-task", "--task-spec", spec, "--data", data, "--out", out)
    assert proc.returncode == 2 and "already exists (pass --overwrite" in proc.stderr
    assert write_task_folder(spec, data, out, overwrite=True) == ["sde_hotel", "sde_hotel_ood"]


def test_any_name_exports_but_an_lm_eval_task_needs_a_plain_one(user_tasks, tmp_path):
    spec, data = user_tasks["classification"]
    spaced = tmp_path / "spaced.yaml"
    spaced.write_text(spec.read_text().replace("name: hotel", "name: Hotel Reviews"))
    assert main(["data", "export", "--task-spec", str(spaced), "--data", str(data), "--designs", "es-sde",
                 "--out", str(tmp_path / "export")]) == 0
    proc = sde("eval", "make-task", "--task-spec", spaced, "--data", data, "--out", tmp_path / "task")
    assert proc.returncode == 2 and "'Hotel Reviews' must be lower-case letters, digits and underscores" in proc.stderr
    assert not (tmp_path / "task").exists()


@pytest.mark.parametrize("metadata,message", [
    ({"desgin": "ew-sde"}, "metadata key 'desgin' is not read by the SDE tasks; did you mean 'design'?"),
    ({"instructions": 1}, "did you mean 'instruction'?"),
    ({"instruction": "1"}, "'instruction': must be an integer"),
    ({"instruction": 1.5}, "'instruction': must be an integer"),
])
def test_lm_eval_metadata_mistakes_are_refused(user_tasks, tmp_path, metadata, message):
    from sde_datagen.errors import UserError
    from sde_tasks.tasks.utils import load_docs

    spec, data = user_tasks["extraction"]
    task = UserTask(spec, data)
    kwargs = {"instruction": 0, **metadata}
    with pytest.raises(UserError, match=message.replace("?", r"\?")):
        load_docs("ner", design="es-sde", pretrained="x", version=1.0, **kwargs)
    with pytest.raises(UserError, match=message.replace("?", r"\?")):
        task.load_docs(design="es-sde", pretrained="x", version=1.0, **kwargs)
