"""The one checker that turns a user's YAML mappings into typed settings (sde_files.typed): plan, trainer, task spec."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sde_files.typed import expected, typed, typed_values


class Bad(Exception):
    pass


@dataclass
class Settings:
    name: str
    rate: float = 0.1
    steps: int | None = None
    tags: list[str] = field(default_factory=list)
    on: bool = False


def test_a_well_typed_mapping_becomes_the_dataclass():
    assert typed(Settings, {"name": "a", "rate": 1, "tags": ["x"]}, "f.yaml", Bad) == Settings("a", 1, None, ["x"])


@pytest.mark.parametrize("data, message", [
    ({"name": "a", "rtae": 1}, "f.yaml: field 'race.rtae': unknown key (did you mean 'rate'?)"),
    ({"rate": 1}, "f.yaml: field 'race.name': missing"),
    ({"name": "a", "steps": True}, "f.yaml: field 'race.steps': expected a whole number or null, got True"),
    ({"name": "a", "tags": ["x", 2]}, "f.yaml: field 'race.tags': expected a list of texts, got ['x', 2]"),
    ({"name": "a", "rate": "1e-4"}, "f.yaml: field 'race.rate': expected a number, got '1e-4'"),
    ([1], "f.yaml: field 'race': expected a mapping, got [1]"),
])
def test_each_mistake_names_the_file_and_the_field(data, message):
    with pytest.raises(Bad) as err:
        typed(Settings, data, "f.yaml", Bad, "race.")
    assert str(err.value) == message


def test_coerce_takes_what_yaml_reads_as_text_and_refuses_what_cannot_be_meant():
    values = typed_values(Settings, {"name": 2, "rate": "1e-4", "steps": 4.0, "on": "yes"}, "f.yaml", Bad, coerce=True)
    assert values == {"name": "2", "rate": 1e-4, "steps": 4, "on": True}
    assert isinstance(typed_values(Settings, {"name": "a", "rate": 1}, "", Bad, coerce=True)["rate"], float)
    for wrong in ({"steps": 4.5}, {"steps": "lots"}, {"rate": True}, {"steps": float("inf")}):
        with pytest.raises(Bad, match=f"^field '{next(iter(wrong))}': expected "):
            typed_values(Settings, {"name": "a", **wrong}, "", Bad, coerce=True)


def test_expected_says_what_a_type_asks_for():
    assert expected(5, str) == "text" and expected("a", str) is None
    assert expected(True, int) == "a whole number" and expected(2 ** 70, int) == "a whole number"
    assert expected({1: 2}, dict[str, int]) == "a mapping" and expected([], list) is None
