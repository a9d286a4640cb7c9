"""The SDE paper's directional findings as pairs of designs, so that a study can say which of them it replicates.

The paper's numbers could not be recovered (`SDE.md`), only its directions: Inst-first beats Inst-last and
No-Inst (it ranks neither of those two above the other), No-MI > MI, Lines > Natural and JSON, PU > OU, text >
numeric labels, ES-SDE > EW-SDE and > the heuristic design, and a CoT effect that varies by task (no direction).
Each is tested on the one-factor pair that isolates it, paper-base being the reference design. They come from
MASA: on ED and NER a study tests whether they transfer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from sde_datagen.design import PAPER_BASE as BASE
from sde_datagen.design import PRESETS
from sde_tasks import significance as sig


@dataclass(frozen=True)
class Direction:
    """The paper says `first` scores higher than `second` (or, when not `directed`, only that they differ by task)."""

    claim: str
    first: str
    second: str
    directed: bool = True


def _changed(**axes: str) -> str:
    return replace(BASE, **axes).id


DIRECTIONS: tuple[Direction, ...] = (
    Direction("Inst-first beats Inst-last", _changed(placement="first"), BASE.id),
    Direction("Inst-first beats No-Inst", _changed(placement="first"), _changed(placement="none")),
    Direction("No-MI beats MI", BASE.id, _changed(input="mi")),
    Direction("Lines beats Natural", _changed(format="lines"), BASE.id),
    Direction("Lines beats JSON", _changed(format="lines"), _changed(format="json")),
    Direction("PU beats OU", BASE.id, _changed(unmentioned="ou")),
    Direction("Text labels beat numeric labels", BASE.id, _changed(labels="numeric")),
    Direction("ES-SDE beats the heuristic design", PRESETS["es-sde"].id, PRESETS["heuristic"].id),
    Direction("ES-SDE beats EW-SDE", PRESETS["es-sde"].id, PRESETS["ew-sde"].id),
    Direction("CoT's effect depends on the task (CoT vs none)", _changed(reasoning="cot"), BASE.id, directed=False),
    Direction("CoT's effect depends on the task (R-CoT vs none)", _changed(reasoning="rcot"), BASE.id, directed=False),
)

REPLICATED, REVERSED = "replicated", "reversed"


def testable(designs: set[str]) -> list[Direction]:
    """The directions whose two designs are both in a study."""
    return [d for d in DIRECTIONS if d.first in designs and d.second in designs]


def direction_verdict(direction: Direction, comparison_verdict: str) -> str:
    """A paired comparison's verdict (first vs second, Holm-adjusted) in the paper's terms."""
    if comparison_verdict == sig.TIED:
        return sig.TIED
    if not direction.directed:
        return f"differs ({'higher' if comparison_verdict == sig.BETTER else 'lower'} with it)"
    return REPLICATED if comparison_verdict == sig.BETTER else REVERSED
