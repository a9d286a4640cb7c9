"""One sample of one design: the prompt a model sees and the completion it learns.

Training data (export) and evaluation prompts (sde_tasks) both come from `render_sample`, so the
text a model is tuned on is the text it is evaluated on.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sde_datagen.codecs import get_codec
from sde_datagen.design import Design
from sde_datagen.families import family_of
from sde_datagen.parsed import Targets
from sde_datagen.records import GoldRecord
from sde_datagen.spec import TaskSpec


@dataclass(frozen=True)
class Sample:
    id: str
    prompt: str
    completion: str
    target: Targets
    design: str
    loss_on_prompt: bool

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.completion}]


@lru_cache(maxsize=256)
def instruction_text(spec: TaskSpec, labels: str, index: int = 0) -> str:
    """Instruction `index` (0 = canonical, others = paraphrases) with the target and label lists filled in."""
    if not 0 <= index < len(spec.instructions):
        from sde_datagen.errors import UserError

        raise UserError(f"task {spec.name} has instructions 0..{len(spec.instructions) - 1}, not {index}")
    p = spec.punctuation
    numeric = labels == "numeric"
    targets = family_of(spec.family).target_list(spec, numeric)
    shown = (p["legend"].format(code=lab.code, text=lab.text) if numeric else lab.text for lab in spec.labels)
    return spec.instructions[index].format(targets=targets, labels=p["list"].join(shown))


def build_prompt(spec: TaskSpec, design: Design, text: str, instruction: int = 0) -> str:
    body = f"{spec.input_prefix}{text}\n"
    if design.placement == "none":
        return body
    inst = instruction_text(spec, design.labels, instruction)
    return f"{inst}\n{body}" if design.placement == "first" else f"{body}{inst}\n"


def render_sample(
    spec: TaskSpec,
    design: Design,
    record: GoldRecord,
    instruction: int = 0,
    rationales: dict[str, str] | None = None,
) -> Sample:
    """`rationales` (from sde_datagen.rationale) is needed only by cot/rcot designs; made here if absent."""
    if design.reasoning != "none" and rationales is None:
        from sde_datagen.rationale import rationales_for

        rationales = rationales_for(spec, record)
    completion = get_codec(spec, design).render(record.targets, rationales)
    return Sample(
        id=record.id,
        prompt=build_prompt(spec, design, record.text, instruction),
        completion=completion,
        target=record.targets,
        design=design.id,
        loss_on_prompt=design.loss_on_prompt,
    )
