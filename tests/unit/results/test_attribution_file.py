"""Attribution files: strict JSON, exact round trips, checked loading, no silent overwrite."""

import json
import math

import pytest
import torch

from tlscopes.results import attribution_file
from tlscopes.results.attribution import Attribution


def build_attribution(**overrides) -> Attribution:
    """Two prompts of 4 and 3 tokens with a target, small overridable defaults."""
    values = dict(
        scores=torch.tensor([[0.5, 1.25, 0.0, 2.0], [1.0, 3.0, 0.25, 0.0]], dtype=torch.float32),
        tokens=[["<bos>", "The", " cat", " sat"], ["<bos>", "A", " dog"]],
        token_ids=torch.tensor([[2, 10, 11, 12], [2, 13, 14, 0]]),
        positions=torch.tensor([3, 2]),
        method="semantic",
        top_token_ids=torch.tensor([[5, 6], [7, 8]]),
        top_tokens=[[" on", " down"], [" ran", " sat"]],
        top_probs=torch.tensor([[0.5, 0.25], [0.75, 0.125]]),
        target_ids=torch.tensor([5, 7]),
        target_probs=torch.tensor([0.5, 0.75]),
        target_tokens=[" on", " ran"],
        details={"eigenvalues": [[2.5], [1.5]], "label": "x"},
        model_name="tiny",
    )
    values.update(overrides)
    return Attribution(**values)


def assert_same(loaded: Attribution, original: Attribution) -> None:
    for name, value in original.__dict__.items():
        other = getattr(loaded, name)
        if isinstance(value, torch.Tensor):
            assert other.dtype == value.dtype, name
            torch.testing.assert_close(other, value, rtol=0, atol=0, equal_nan=True)
        elif name == "details":
            assert json.dumps(other, sort_keys=True) == json.dumps(value, sort_keys=True)
        else:
            assert other == value, name


def strict_json(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_round_trip_is_exact(tmp_path):
    original = build_attribution(scores=torch.rand(2, 4, dtype=torch.float64))
    path = tmp_path / "result.json"
    original.save(path)
    assert_same(Attribution.load(path), original)
    assert strict_json(path.read_text())["format_version"] == attribution_file.FORMAT_VERSION


def test_non_finite_values_are_strict_json_and_read_back_exactly(tmp_path):
    scores = torch.tensor([[math.nan, math.inf, -math.inf, 1.5], [0.0, 2.0, 3.0, 0.0]])
    details = {"ig_sum": [math.nan, -math.inf], "nested": {"gap": math.inf}, "ok": 1.0}
    original = build_attribution(scores=scores, details=details)
    path = tmp_path / "result.json"
    original.save(path)
    payload = strict_json(path.read_text())
    assert payload["scores"]["tensor"][0][:3] == ["NaN", "Infinity", "-Infinity"]
    assert payload["details"]["ig_sum"] == [{"$float": "NaN"}, {"$float": "-Infinity"}]
    loaded = Attribution.load(path)
    assert_same(loaded, original)
    assert math.isnan(loaded.details["ig_sum"][0]) and loaded.details["nested"]["gap"] == math.inf


def test_a_version_1_file_written_the_old_way_still_loads(tmp_path):
    original = build_attribution(details={"completeness_gap": [math.nan, 0.5]})
    # The version-1 writer: tensors as lists with str(dtype), everything else as is, and
    # Python's json defaults (bare NaN tokens).
    payload = {"format_version": 1}
    for name, value in original.__dict__.items():
        if isinstance(value, torch.Tensor):
            payload[name] = {"tensor": value.tolist(), "dtype": str(value.dtype)}
        else:
            payload[name] = value
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    assert "NaN" in path.read_text()
    loaded = Attribution.load(path)
    assert_same(loaded, original)


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match=r"result\.json.*overwrite=True"):
        build_attribution().save(path)
    assert path.read_text() == "keep me"
    build_attribution().save(path, overwrite=True)
    assert Attribution.load(path).model_name == "tiny"


def test_details_a_file_cannot_hold_are_refused_before_writing(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(TypeError, match=r"details\['t'\] is a Tensor"):
        build_attribution(details={"t": torch.zeros(2)}).save(path)
    with pytest.raises(ValueError, match=r"\$float"):
        build_attribution(details={"x": {"$float": "NaN"}}).save(path)
    assert not path.exists()


def saved_payload(tmp_path) -> dict:
    path = tmp_path / "good.json"
    build_attribution().save(path)
    return json.loads(path.read_text())


def edit(payload, name, value):
    payload[name] = value


BAD_FILES = {
    "unknown version": (lambda p: edit(p, "format_version", 3), "format_version 3", None),
    "int scores": (
        lambda p: edit(
            p, "scores", {"tensor": [[1, 2, 3, 4], [1, 2, 3, 4]], "dtype": "torch.int64"}
        ),
        "floating-point tensor",
        "scores",
    ),
    "strings in scores": (
        lambda p: p["scores"]["tensor"][0].__setitem__(0, "high"),
        "must hold numbers",
        "scores",
    ),
    "float token ids": (
        lambda p: edit(p, "token_ids", {"tensor": [[1.5] * 4] * 2, "dtype": "torch.float32"}),
        "integer tensor",
        "token_ids",
    ),
    "fractions in token ids": (
        lambda p: p["token_ids"]["tensor"][0].__setitem__(0, 1.5),
        "must hold integers",
        "token_ids",
    ),
    "negative token id": (
        lambda p: p["token_ids"]["tensor"][0].__setitem__(0, -1),
        "outside",
        "token_ids",
    ),
    "unknown dtype": (
        lambda p: p["scores"].__setitem__("dtype", "torch.complex64"),
        "complex64",
        "scores",
    ),
    "ragged scores": (
        lambda p: p["scores"]["tensor"][1].pop(),
        "different lengths",
        "scores",
    ),
    "one-dimensional scores": (
        lambda p: p["scores"].__setitem__("tensor", [1.0, 2.0]),
        "2-dimensional",
        "scores",
    ),
    "token ids of another shape": (
        lambda p: p["token_ids"]["tensor"][0].pop() and p["token_ids"]["tensor"][1].pop(),
        "shape [2, 3]",
        "token_ids",
    ),
    "position past the prompt": (
        lambda p: p["positions"]["tensor"].__setitem__(1, 3),
        "outside prompt 1",
        "positions",
    ),
    "tokens not strings": (
        lambda p: p["tokens"][0].__setitem__(1, 17),
        "lists of strings",
        "tokens",
    ),
    "tokens not a list": (lambda p: edit(p, "tokens", "The cat"), "lists of strings", "tokens"),
    "too many tokens": (lambda p: p["tokens"][1].extend(["x", "y"]), "at most 4", "tokens"),
    "top tokens of another length": (
        lambda p: p["top_tokens"][0].pop(),
        "rows of 2",
        "top_tokens",
    ),
    "top probs of another shape": (
        lambda p: p["top_probs"].__setitem__("tensor", [[0.5], [0.5]]),
        "shape [2, 1]",
        "top_probs",
    ),
    "target ids without the rest": (
        lambda p: edit(p, "target_probs", None),
        "all present or all absent",
        "target_ids",
    ),
    "target tokens of another length": (
        lambda p: p["target_tokens"].pop(),
        "1 entries, expected 2",
        "target_tokens",
    ),
    "missing field": (lambda p: p.pop("scores"), "missing fields ['scores']", None),
    "unknown field": (lambda p: edit(p, "colour", "red"), "unknown fields ['colour']", None),
    "method not a string": (lambda p: edit(p, "method", 3), "must be a string", "method"),
    "details not an object": (lambda p: edit(p, "details", [1]), "must be an object", "details"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_load_names_the_file_and_the_field(tmp_path, case):
    change, message, field_name = BAD_FILES[case]
    payload = saved_payload(tmp_path)
    change(payload)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError) as error:
        Attribution.load(path)
    text = str(error.value)
    assert str(path) in text and message in text, text
    if field_name is not None:
        assert f"field {field_name!r}" in text, text


def test_load_refuses_text_that_is_not_json_or_not_an_object(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("<html>")
    with pytest.raises(ValueError, match="not JSON"):
        Attribution.load(path)
    path.write_text(json.dumps([saved_payload(tmp_path)]))
    with pytest.raises(ValueError, match="expected a JSON object with the Attribution fields"):
        Attribution.load(path)


def test_the_file_schema_covers_every_attribution_field():
    names = {item for item in Attribution.__dataclass_fields__}
    assert set(attribution_file.FIELDS) == names
    assert set(attribution_file.TENSOR_FIELDS) <= names


def test_format_version_true_is_refused_by_the_one_header_reader(tmp_path):
    payload = saved_payload(tmp_path)
    payload["format_version"] = True  # True == 1, a readable version, unless bools are refused
    path = tmp_path / "bool.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="format_version True"):
        Attribution.load(path)
    for kind, name in (("LayerAttribution", "layer"), ("GenerationAttribution", "generation")):
        path.write_text(json.dumps({"format": name, "format_version": True}))
        with pytest.raises(
            ValueError, match=f"{kind} file this version reads: format_version True"
        ):
            attribution_file.read_header(path, kind, (1,), format_name=name)


def refuse_values(monkeypatch):
    """Makes reading any tensor value fail, so a test shows a refusal came before it."""

    def never(*args):
        raise AssertionError("array values were read before the file was refused")

    monkeypatch.setattr(attribution_file.Reader, "float_value", never)
    monkeypatch.setattr(attribution_file.Reader, "integer_value", never)


def test_more_positions_than_the_limit_are_refused_before_the_arrays_are_read(
    tmp_path, monkeypatch
):
    width = attribution_file.DEFAULT_MAX_POSITIONS + 1
    big = build_attribution(
        scores=torch.zeros(1, width),
        tokens=[["x"] * width],
        token_ids=torch.zeros(1, width, dtype=torch.long),
        positions=torch.tensor([width - 1]),
        top_token_ids=torch.tensor([[5, 6]]),
        top_tokens=[[" on", " down"]],
        top_probs=torch.tensor([[0.5, 0.25]]),
        target_ids=None,
        target_probs=None,
        target_tokens=None,
    )
    path = tmp_path / "long.json"
    big.save(path)
    with monkeypatch.context() as patch:
        refuse_values(patch)
        with pytest.raises(ValueError, match=f"pass max_positions={width}") as error:
            Attribution.load(path)
    assert f"{width:,} positions, over the limit of {width - 1:,}" in str(error.value)
    assert Attribution.load(path, max_positions=width).scores.shape == (1, width)


def test_a_file_over_the_byte_limit_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    build_attribution().save(path)
    size = path.stat().st_size

    def never(*args, **kwargs):
        raise AssertionError("the file was parsed")

    with monkeypatch.context() as patch:
        patch.setattr(attribution_file.json, "loads", never)
        with pytest.raises(ValueError, match=f"{size:,} bytes, over the {size - 1:,}-byte limit"):
            Attribution.load(path, max_bytes=size - 1)
    assert_same(Attribution.load(path, max_bytes=size), build_attribution())


def test_inconsistent_shapes_are_refused_before_the_arrays_are_read(tmp_path, monkeypatch):
    payload = saved_payload(tmp_path)
    payload["token_ids"]["tensor"] = [row * 1000 for row in payload["token_ids"]["tensor"]]
    path = tmp_path / "inconsistent.json"
    path.write_text(json.dumps(payload))
    refuse_values(monkeypatch)
    with pytest.raises(ValueError, match=r"field 'token_ids' has shape \[2, 4000\]"):
        Attribution.load(path)
