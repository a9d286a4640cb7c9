"""The runaway stop leaves every strict score as it is: checked on every output of the committed studies.

Generation may stop an answer once `Codec.runaway_stop` says it is a runaway whatever follows, and keep what it
returns. Wherever the stop looks (any cut of the answer), the whole answer must then be a format error (the strict
rule scores it as empty), and so must the kept answer: both score the same under the strict rule.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from sde_datagen.codecs import get_codec
from sde_datagen.design import resolve_design
from sde_study.folder import StudyFolder
from sde_study.plan import read_plan
from sde_tasks.docstats import from_items
from sde_tasks.logged import answer
from sde_tasks.rules import STRICT
from sde_tasks.scoring import PARSE_MODE
from sde_tasks.tasks.utils import score_doc

STUDIES = Path(__file__).resolve().parents[1] / "docs" / "studies"
KEPT = sorted(p.parent for p in STUDIES.glob("**/study.yaml") if (p.parent / "samples").is_dir())


def cuts(codec, text: str) -> list[str]:
    """Every distinct partial answer the stop can see (it reads a partial answer up to its last boundary): the text
    up to each boundary and a few characters past it, and the whole text."""
    return [text[:end + 3] for end in codec.boundaries(text)] + [text]


def test_committed_studies_keep_samples() -> None:
    assert len(KEPT) >= 4, KEPT  # the NER races, the MASA study and the ED recipe keep their outputs


@pytest.mark.parametrize("study", KEPT, ids=lambda p: p.relative_to(STUDIES).as_posix())
def test_a_settled_runaway_is_a_strict_format_error_wherever_it_is_cut(study: Path) -> None:
    plan, folder = read_plan(study), StudyFolder(study)
    task = plan.resolved_task()
    settled = 0
    for design_name in plan.designs:
        design = resolve_design(design_name, task.spec().family)
        for seed in plan.seeds:
            for name in plan.lm_eval_tasks:
                samples = folder.read_samples(design_name, seed, name)
                for sample in samples or ():
                    codec = get_codec(task.spec(sample["doc"].get("domain") or None), design)
                    text = answer(sample) or ""
                    kept = next((k for cut in cuts(codec, text) if (k := codec.runaway_stop(cut))), None)
                    if kept is None:
                        continue
                    settled += 1
                    assert codec.parse(text, PARSE_MODE).errors, (design_name, seed, sample["doc_id"], text[:200])
                    assert any(e.kind == "runaway" for e in codec.parse(kept, PARSE_MODE).errors)
                    spec = codec.spec
                    strict = [from_items([score_doc(spec, sample["doc"], t)], spec.family, spec.label_ids,
                                         spec.absent_label or None).under(STRICT).table for t in (kept, text)]
                    assert (strict[0] == strict[1]).all(), (design_name, seed, sample["doc_id"])
    assert settled or "ed-recipe" in study.as_posix()  # ED's answers here never run away
