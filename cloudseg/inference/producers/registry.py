"""Mask producers by name: every module of this package but ``base`` and ``registry`` is one.

Modules are imported only when their producer is asked for, so naming the producers (config
checks, ``--help``) loads neither torch nor s2cloudless.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from cloudseg.inference.producers.base import MaskProducer
from cloudseg.inference.spec import InferenceSpec

PACKAGE = "cloudseg.inference.producers"
#: Modules of the package that are not producers.
NOT_PRODUCERS = frozenset({"base", "registry"})


def producer_names() -> tuple[str, ...]:
    """The names of every producer, sorted."""
    modules = pkgutil.iter_modules([str(Path(__file__).parent)])
    return tuple(sorted(m.name for m in modules if m.name not in NOT_PRODUCERS))


def producer_class(name: str) -> type[MaskProducer]:
    """The producer class called ``name`` (``ValueError`` naming the choices if there is none)."""
    if name not in producer_names():
        raise ValueError(f"Unknown mask producer {name!r}; choose from {list(producer_names())}.")
    producer = importlib.import_module(f"{PACKAGE}.{name}").PRODUCER
    if producer.name != name:
        raise TypeError(f"{PACKAGE}.{name}.PRODUCER is named {producer.name!r}, not {name!r}.")
    return producer


def build_producer(
    name: str,
    *,
    checkpoint: str | None = None,
    inference: InferenceSpec | None = None,
    **options: Any,
) -> MaskProducer:
    """The producer ``name`` with its ``options`` (its dataclass fields).

    ``checkpoint`` and ``inference`` are given to the producers that run a checkpoint (``model``)
    and ignored by the others, so callers can build any producer the same way.
    """
    return producer_class(name).create(
        checkpoint=checkpoint, inference=inference or InferenceSpec(), **options
    )
