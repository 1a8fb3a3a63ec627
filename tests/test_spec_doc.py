"""docs/spec.md is generated from the spec's own fields (study.spec_doc) and kept in step with them."""

from pydantic import Field

from study import spec_doc
from study.spec import Resources, StudySpec


def test_the_spec_reference_is_in_step_with_the_code():
    assert spec_doc.DOC.read_text() == spec_doc.render(), "docs/spec.md is out of step: run python -m study.spec_doc"
    assert spec_doc.main(["--check"]) == 0


def test_every_study_field_is_documented_with_type_default_description_and_example():
    text = spec_doc.DOC.read_text()
    shipped = spec_doc.shipped_values()
    for title, path, model in spec_doc.sections(StudySpec, "", "Study fields"):
        assert f"## {title}\n" in text, title
        for name, field in model.model_fields.items():
            full = f"{path}.{name}" if path else name
            assert field.description, f"{full} has no description"
            assert spec_doc.example_text(field, full, shipped), f"{full} has no example"
            row = next((line for line in spec_doc.table(model, path, shipped) if line.startswith(f"| `{name}` |")), None)
            assert row is not None and row.count(" | ") == 4, (full, row)
    # the nested models and the trial configuration are there, with the search entries' own fields
    assert {"search.*", "early_stopping", "confirm", "resources", "base", "base.task", "base.probe"} <= \
        {path for _, path, _ in [*spec_doc.sections(StudySpec, "", ""), *spec_doc.sections(spec_doc.TrialConfig, "base", "")]}
    assert "| `per_layer` | bool | `false` |" in text and "| `pack_size` | int or one of: auto | `16` |" in text


def test_a_field_added_to_a_model_appears_without_touching_the_generator():
    class MoreResources(Resources):
        memory_gib: float = Field(4.0, gt=0, description="memory a trial holds")

    rows = spec_doc.table(MoreResources, "resources", {})
    assert "| `memory_gib` | float | `4.0` | memory a trial holds | `4.0` |" in rows


def test_types_and_values_read_as_a_spec_writes_them():
    from typing import Literal

    assert spec_doc.type_text(int | None) == "int or null"
    assert spec_doc.type_text(list[float]) == "list of float"
    assert spec_doc.type_text(Literal["max", "min"]) == "one of: max, min"
    assert spec_doc.value_text("eval_reward_mean") == "eval_reward_mean" and spec_doc.value_text("1e-3") == '"1e-3"'
    assert spec_doc.value_text(list(range(100))).endswith(" ...") and len(spec_doc.value_text(list(range(100)))) == 60
