"""Hooks and parameter flags: nothing stays attached or changed, also across threads."""

from __future__ import annotations

import threading

import pytest
import torch

import tlscopes as ts
from tests.models import VARIANTS
from tlscopes.core.hooks import model_lock

SHORT = "the cat sat"
LONG = "the person grew up in the south and studied at columbia . the person is a big red house"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request):
    return VARIANTS[request.param]()


def attached_hooks(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def all_parameters(model):
    found = {id(p): p for p in model.parameters()}
    found.update((id(p), p) for p in getattr(model, "original_model", model).parameters())
    return list(found.values())


def test_concurrent_calls_on_one_model_do_not_interfere(model):
    for p in all_parameters(model):
        p.requires_grad_(True)
    scopes = [ts.FisherScope(rank=2), ts.TemperatureScope()]
    expected = {text: ts.attribute_many(model, text, scopes) for text in (SHORT, LONG)}
    results: dict[tuple[int, int], list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(thread: int, text: str) -> None:
        try:
            start.wait()
            for repeat in range(6):
                results[(thread, repeat)] = (text, ts.attribute_many(model, text, scopes))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=(index, SHORT if index % 2 else LONG))
        for index in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 24
    for text, got in results.values():
        for result, reference in zip(got, expected[text], strict=True):
            torch.testing.assert_close(result.scores, reference.scores, rtol=0, atol=0)
    assert attached_hooks(model) == 0
    assert all(p.requires_grad for p in all_parameters(model))


def test_lock_is_per_model_and_reentrant(model):
    lock = model_lock(model)
    assert model_lock(model) is lock
    with lock:
        # The same thread may call tlscopes from inside its own critical section.
        ts.attribute(model, SHORT, ts.TemperatureScope())
    other = object.__new__(type(model))
    assert model_lock(other) is not lock


def test_inference_mode_callers_get_the_same_scores(model):
    expected = ts.attribute(model, SHORT, ts.FisherScope())
    with torch.inference_mode():
        ids = model.to_tokens(SHORT)
        got = ts.attribute(model, ids, ts.FisherScope())
        direction = ts.attribute(model, ids, ts.DirectionScope(torch.ones(model.cfg.d_model)))
    torch.testing.assert_close(got.scores, expected.scores)
    assert bool(torch.isfinite(direction.scores).all())
    assert attached_hooks(model) == 0
