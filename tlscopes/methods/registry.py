"""Every attribution method by name, and several methods at the cost of one.

The registry is filled in one place (:func:`_build_registry`); a name registered twice is
refused. Each method is called as ``method.attribute(model, inputs, target=..., position=...,
**options)`` and returns an :class:`~tlscopes.results.attribution.Attribution`.

:func:`attribute_methods` computes several methods for the same prompts while sharing work:
Fisher, Temperature and Semantic Scope, saliency (which is Semantic Scope's score) and Input x
Gradient (Semantic Scope's gradient times the input) all come from one forward pass and the
backward passes of three directions; Integrated Gradients runs its path points in batches; random costs no
model pass beyond the one for the prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlscopes.core.assemble import build_attribution
from tlscopes.core.engine import attribute
from tlscopes.core.inputs import Inputs, prepare_inputs
from tlscopes.core.scopes import DirectionScope, Scope, scope_from_name
from tlscopes.methods import baselines
from tlscopes.protocols import TransformerLensModel
from tlscopes.results.attribution import Attribution


@dataclass(frozen=True)
class Method:
    """An attribution method reachable by name.

    Attributes:
        name: the registry name.
        description: what the score is, in one line.
        target_specific: whether the score depends on a target token (the others are blind to it).
        attribute: ``fn(model, inputs, *, target, position, **options) -> Attribution``.
        required_options: options the method cannot run without (a direction's ``vector``).
        objectives: what a target-specific method can differentiate, the default first:
            ``"logit"`` (the paper) and, where the method takes an ``objective`` option,
            ``"log_prob"`` (the authors' script; see :mod:`tlscopes.evaluation.authors_protocol`).
    """

    name: str
    description: str
    target_specific: bool
    attribute: Callable[..., Attribution]
    required_options: tuple[str, ...] = ()
    objectives: tuple[str, ...] = ()


def _fisher(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Any = None,
    position: int = -1,
    rank: int = 1,
):
    return attribute(model, inputs, scope_from_name("fisher", rank=rank), position=position)


def _temperature(
    model: TransformerLensModel, inputs: Inputs, *, target: Any = None, position: int = -1
):
    return attribute(model, inputs, scope_from_name("temperature"), position=position)


def _semantic(
    model: TransformerLensModel, inputs: Inputs, *, target: Any = None, position: int = -1
):
    return attribute(model, inputs, baselines.semantic_scope(target), position=position)


def _direction(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Any = None,
    position: int = -1,
    vector: Any = None,
    at: str | None = None,
    label: str = "direction",
):
    return attribute(model, inputs, DirectionScope(vector, label=label, at=at), position=position)


def _random(
    model: TransformerLensModel,
    inputs: Inputs,
    *,
    target: Any = None,
    position: int = -1,
    seed: int = 0,
):
    return baselines.random_attribution(model, inputs, seed=seed, position=position)


def _register(registry: dict[str, Method], method: Method) -> None:
    if method.name in registry:
        raise ValueError(f"attribution method {method.name!r} is registered twice")
    registry[method.name] = method


def _build_registry() -> dict[str, Method]:
    registry: dict[str, Method] = {}
    for method in (
        Method("fisher", "Fisher Scope: ||u_1^T J_t|| (eq. 5-6)", False, _fisher),
        Method(
            "temperature", "Temperature Scope: ||(y/||y||)^T J_t|| (eq. 7-8)", False, _temperature
        ),
        Method(
            "semantic",
            "Semantic Scope: ||w_target^T J_t|| (eq. 3-4, 11)",
            True,
            _semantic,
            objectives=("logit",),
        ),
        Method(
            "input_x_gradient",
            "Input x Gradient: ||x_t * df/dx_t||, f the target's logit (eq. 10) or log-probability",
            True,
            baselines.input_x_gradient,
            objectives=baselines.OBJECTIVES,
        ),
        Method(
            "integrated_gradients",
            "Integrated Gradients from a baseline (zero by default): ||IG_t|| (eq. 13-14)",
            True,
            baselines.integrated_gradients,
            objectives=baselines.OBJECTIVES,
        ),
        Method(
            "saliency",
            "gradient norm ||dz_target/dx_t||",
            True,
            baselines.saliency,
            objectives=("logit",),
        ),
        Method("random", "seeded uniform random scores", False, _random),
        Method(
            "direction",
            "Direction Scope: ||v^T J_t|| for a given v, of y or of a hook point's h (sec. 6)",
            False,
            _direction,
            required_options=("vector",),
        ),
    ):
        _register(registry, method)
    return registry


METHODS: dict[str, Method] = _build_registry()

# The methods one shared forward and backward pass serves (see `attribute_methods`).
SHARED_PASS = ("fisher", "temperature", "semantic", "saliency", "input_x_gradient")


def method_names(*, with_required_options: bool = False) -> list[str]:
    """The registered method names, in registry order.

    Args:
        with_required_options: also list methods that need options to run (``direction`` needs
            a ``vector``); by default only those that run on a prompt alone, as an evaluation
            over all methods needs.
    """
    return [
        name
        for name, method in METHODS.items()
        if with_required_options or not method.required_options
    ]


def get_method(name: str) -> Method:
    """The method registered as `name`; an unknown name raises with the list of known ones."""
    if not isinstance(name, str) or name not in METHODS:
        raise KeyError(f"unknown attribution method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def attribute_by_name(
    model: TransformerLensModel,
    inputs: Inputs,
    name: str,
    *,
    target: Any = None,
    position: int = -1,
    **options: Any,
) -> Attribution:
    """Runs the method registered as `name` (options: rank, n_steps, batch_size, seed, vector,
    at, ...).

    Example:
        >>> attribute_by_name(model, text, "direction", vector=probe, at="blocks.8.hook_resid_post")
        ... # doctest: +SKIP
    """
    method = get_method(name)
    missing = [option for option in method.required_options if options.get(option) is None]
    if missing:
        raise ValueError(
            f"method {name!r} needs the option(s) {missing}, e.g. vector=torch.randn(d)"
        )
    return method.attribute(model, inputs, target=target, position=position, **options)


def attribute_methods(
    model: TransformerLensModel,
    inputs: Inputs,
    names: Sequence[str],
    *,
    target: Any = None,
    position: int = -1,
    n_steps: int = baselines.DEFAULT_N_STEPS,
    ig_batch_size: int | None = None,
    memory_budget: int = baselines.DEFAULT_MEMORY_BUDGET,
    seed: int = 0,
    top_k: int = 10,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Attribution]:
    """Several methods for the same prompts, sharing their passes; same scores as one by one.

    Args:
        names: registry names; each appears once in the result.
        target: the target of the target-specific methods (None: each prompt's top prediction,
            the same for all of them).
        n_steps: Integrated Gradients' number of path points.
        ig_batch_size: Integrated Gradients' path points per batch (None: from memory_budget).
        memory_budget: Integrated Gradients' activation memory per batch, in bytes.
        seed: the random method's seed.
        method_options: extra options per method name, e.g. ``{"input_x_gradient":
            {"objective": "log_prob"}}`` or ``{"integrated_gradients": {"baseline": "pad"}}``
            (:data:`tlscopes.methods.baselines.IG_BASELINES`); an objective must be one the
            method declares. A
            method with a non-default objective runs on its own instead of in the shared pass.

    Returns:
        name -> Attribution, in the order given.
    """
    names = list(dict.fromkeys(names))
    options = {name: dict(value) for name, value in (method_options or {}).items()}
    for name in names:
        method = get_method(name)
        if method.required_options:
            raise ValueError(
                f"method {name!r} needs options ({', '.join(method.required_options)}); "
                "run it with attribute_by_name"
            )
        objective = options.get(name, {}).get("objective")
        if objective is not None and objective not in method.objectives:
            known = ", ".join(method.objectives) or "none"
            raise ValueError(
                f"method {name!r} cannot differentiate {objective!r}; its objectives: {known}"
            )
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options for methods that are not run: {unknown}")
    prepared = prepare_inputs(model, inputs, position)
    results: dict[str, Attribution] = {}
    alone = {name for name in names if options.get(name, {}).get("objective", "logit") != "logit"}
    shared = [name for name in names if name in SHARED_PASS and name not in alone]
    if shared:
        semantic = baselines.semantic_scope(target)
        scopes: list[Scope] = [semantic]
        if "fisher" in shared:
            scopes.append(scope_from_name("fisher"))
        if "temperature" in shared:
            scopes.append(scope_from_name("temperature"))
        passed = baselines.prompt_gradients(model, prepared, scopes)
        target_ids = passed.directions[0].target_ids
        semantic_scores = passed.scores(0)
        scores = {
            "semantic": semantic_scores,
            "saliency": semantic_scores,
            "input_x_gradient": baselines.input_x_gradient_scores(
                passed.embeddings, passed.gradients[0][:, 0]
            ),
        }
        details = {"semantic": passed.directions[0].details}
        for index, scope in enumerate(scopes[1:], start=1):
            scores[scope.name] = passed.scores(index)
            details[scope.name] = passed.directions[index].details
        for name in shared:
            results[name] = build_attribution(
                model,
                prepared,
                scores[name],
                method=name,
                logits=passed.logits,
                target_ids=target_ids if get_method(name).target_specific else None,
                details=details.get(name, {}),
                top_k=top_k,
                parameters={"position": position, "shared_pass": shared},
            )
        if target is None:
            # Later methods explain the same top prediction the shared pass found.
            target = target_ids
    if "input_x_gradient" in alone:
        results["input_x_gradient"] = baselines.input_x_gradient(
            model,
            inputs,
            target=target,
            position=position,
            top_k=top_k,
            **options["input_x_gradient"],
        )
    if "integrated_gradients" in names:
        results["integrated_gradients"] = baselines.integrated_gradients(
            model,
            inputs,
            target=target,
            position=position,
            n_steps=n_steps,
            batch_size=ig_batch_size,
            memory_budget=memory_budget,
            top_k=top_k,
            **options.get("integrated_gradients", {}),
        )
    if "random" in names:
        results["random"] = baselines.random_attribution(
            model, inputs, seed=seed, position=position, top_k=top_k
        )
    return {name: results[name] for name in names}


__all__ = [
    "METHODS",
    "Method",
    "attribute_by_name",
    "attribute_methods",
    "get_method",
    "method_names",
]
