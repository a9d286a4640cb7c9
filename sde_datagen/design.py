"""Sample designs: the six axes of SDE, stable variant ids, named presets and design sets.

A `Design` is one choice per axis. Its `id` (e.g. `first-nomi-lines-pu-text-none`) names dataset
configs, adapter cards, lm-eval metadata and leaderboard rows alike, so it never changes shape.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace

from sde_datagen.errors import UserError
from sde_datagen.families import family_of

# Axis name -> its options, in the order they appear in a variant id. The first option is not a
# default: every Design names all six.
AXES: dict[str, tuple[str, ...]] = {
    "placement": ("first", "last", "none"),
    "input": ("nomi", "mi"),
    "format": ("natural", "lines", "json", "heuristic"),
    "unmentioned": ("pu", "ou"),
    "labels": ("text", "numeric"),
    "reasoning": ("none", "cot", "rcot"),
}

# What each option means, for `sde data designs` and dataset cards.
OPTION_WORDS: dict[str, dict[str, str]] = {
    "placement": {"first": "instruction before the input", "last": "instruction after the input", "none": "no instruction"},
    "input": {"nomi": "loss on the completion only", "mi": "loss on prompt and completion"},
    "format": {
        "natural": "predictions in one natural sentence",
        "lines": "one prediction per line",
        "json": "one JSON object per line",
        "heuristic": 'one ["type", "span"] JSON array per found item',
    },
    "unmentioned": {"pu": "every target listed, with a placeholder when absent", "ou": "only the targets that are present"},
    "labels": {"text": "labels as words", "numeric": "labels as numbers"},
    "reasoning": {"none": "no rationale", "cot": "rationale, then answer, per target", "rcot": "answer, then rationale, per target"},
}


@dataclass(frozen=True)
class Design:
    placement: str
    input: str
    format: str
    unmentioned: str
    labels: str
    reasoning: str

    def __post_init__(self) -> None:
        for axis, options in AXES.items():
            value = getattr(self, axis)
            if value not in options:
                raise UserError(f"design axis '{axis}' has no option '{value}' (options: {', '.join(options)})")

    @property
    def id(self) -> str:
        return "-".join(getattr(self, axis) for axis in AXES)

    @property
    def loss_on_prompt(self) -> bool:
        return self.input == "mi"

    @property
    def goes_out_of_domain(self) -> bool:
        """Whether it can be evaluated on other targets than it was trained on: only its instruction names them
        (a No-Inst design cannot know the out-of-domain targets)."""
        return self.placement != "none"

    def problems(self, family: str | None = None) -> list[str]:
        """Why this combination makes no sense (for a task family, when given); empty when valid."""
        found = family_of(family).design_problems(self.format) if family else []
        if self.format == "heuristic":
            if self.unmentioned == "pu":
                found.append("the heuristic format lists found items only, so it cannot carry placeholders (use ou)")
            if self.reasoning != "none":
                found.append("a heuristic [type, span] pair has no place for a rationale")
        return found

    def check(self, family: str | None = None) -> "Design":
        problems = self.problems(family)
        if problems:
            raise UserError(f"design {self.id} is not valid: {'; '.join(problems)}")
        return self

    def in_words(self) -> str:
        return "; ".join(OPTION_WORDS[axis][getattr(self, axis)] for axis in AXES)

    @classmethod
    def from_id(cls, variant_id: str) -> "Design":
        values = variant_id.split("-")
        if len(values) != len(AXES):
            raise UserError(
                f"'{variant_id}' is neither a preset ({', '.join(PRESETS)}), a design set ({', '.join(DESIGN_SETS)}) "
                f"nor a variant id like {PRESETS['es-sde'].id}"
            )
        return cls(*values)


PRESETS: dict[str, Design] = {
    "es-sde": Design("first", "nomi", "lines", "pu", "text", "none"),
    "ew-sde": Design("last", "nomi", "natural", "ou", "text", "none"),
    "paper-base": Design("last", "nomi", "natural", "pu", "text", "none"),
    "heuristic": Design("first", "nomi", "heuristic", "ou", "text", "none"),
}
PAPER_BASE = PRESETS["paper-base"]  # the one-factor study's reference design
PRESET_NAMES = {d.id: name for name, d in PRESETS.items()}


def short_name(variant_id: str) -> str:
    """How reports and tables name a design: its preset's name, `axis=option` for a one-factor change of paper-base,
    else the variant id."""
    if variant_id in PRESET_NAMES:
        return PRESET_NAMES[variant_id]
    changed = [f"{a}={o}" for a, o, b in zip(AXES, variant_id.split("-"), PAPER_BASE.id.split("-")) if o != b]
    return changed[0] if len(changed) == 1 else variant_id


def one_factor(family: str | None = None) -> list[Design]:
    """paper-base plus every valid single-axis change from it: the paper's one-factor study."""
    base = PAPER_BASE
    designs = [base]
    for axis, options in AXES.items():
        for option in options:
            if option != getattr(base, axis):
                changed = replace(base, **{axis: option})
                if not changed.problems(family):
                    designs.append(changed)
    return designs


def grid(family: str | None = None) -> list[Design]:
    """Every valid combination of the six axes."""
    every = (Design(*values) for values in itertools.product(*AXES.values()))
    return [design for design in every if not design.problems(family)]


DESIGN_SETS = {"one-factor": one_factor, "grid": grid}


def resolve_design(name: str, family: str | None = None) -> Design:
    """A preset name or a variant id -> a valid Design."""
    if name in DESIGN_SETS:
        raise UserError(f"'{name}' is a design set; give one design here (a preset: {', '.join(PRESETS)}, "
                        "or a variant id)")
    design = PRESETS.get(name) or Design.from_id(name)
    return design.check(family)


def resolve_designs(names: str, family: str | None = None) -> list[Design]:
    """Comma-separated presets, variant ids and design sets -> distinct valid Designs, in order."""
    designs: list[Design] = []
    for name in (part.strip() for part in names.split(",")):
        if not name:
            continue
        group = DESIGN_SETS[name](family) if name in DESIGN_SETS else [resolve_design(name, family)]
        designs.extend(d for d in group if d not in designs)
    if not designs:
        raise UserError("no design given (use a preset, a variant id or a set: one-factor, grid)")
    return designs


def design_axes(design: Design) -> dict[str, str]:
    return {f.name: getattr(design, f.name) for f in fields(design)}
