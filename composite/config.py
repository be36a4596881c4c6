"""The schema of ``conf/composite.yaml``: Hydra structured configs built from the settings classes.

Every default is stated once, in the settings dataclass the config key mirrors
(:class:`~composite.stack.StackSettings` for ``stack``, :class:`~composite.masking.MaskSettings`
for ``masks``, :class:`~composite.driver.CompositeSettings` for ``composite``,
:class:`~composite.cluster.ClusterSettings` for ``cluster``,
:class:`~composite.evidence.settings.EvaluationSettings` for ``evaluation`` and
:class:`~composite.evidence.settings.QuicklookSettings` for ``quicklook``): :func:`schema_of`
turns each into a dataclass OmegaConf can type-check (tuples become lists, unions it cannot check
become ``Any``) with the same field names and defaults, and :func:`register_configs` stores the
whole tree in Hydra's ConfigStore as ``composite_schema``, the first entry of
``conf/composite.yaml``'s defaults list. The YAML then only says what is not a code default (the
run's folders, built from ``paths``), and the config groups (``cluster/``, ``evaluation/``) only
what each option changes. A wrong type fails at composition, naming the key, the value and the
type (``composite.q=abc``); the settings classes check the rest (ranges, names, files).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from typing import Any, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from composite.cluster import ClusterSettings
from composite.driver import CompositeSettings
from composite.evidence.settings import EvaluationSettings, QuicklookSettings
from composite.masking import MaskSettings
from composite.stack import StackSettings

SCHEMA_NAME = "composite_schema"
#: Fields of the settings classes that are not config keys under their section.
NOT_CONFIG_KEYS: dict[type, tuple[str, ...]] = {MaskSettings: ("checkpoint",)}
PRIMITIVES = (int, float, str, bool)


def config_type(annotation: Any) -> Any:
    """The type OmegaConf checks a value against, for a settings field's annotation."""
    origin = typing.get_origin(annotation)
    if annotation is float:  # a whole number stays as typed: 20 m keys caches as it always did
        return Union[int, float]  # noqa: UP007
    if annotation in PRIMITIVES or annotation is Any:
        return annotation
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        inner = config_type(options[0]) if len(options) == 1 else Any
        optional = len(options) < len(typing.get_args(annotation))
        return Optional[inner] if optional and inner is not Any else inner  # noqa: UP007, UP045
    if origin in (tuple, list):
        items = {arg for arg in typing.get_args(annotation) if arg is not Ellipsis}
        item = items.pop() if len(items) == 1 else Any
        return list[item if item in PRIMITIVES else Any]
    if origin is dict:
        return dict[str, Any]
    if dataclasses.is_dataclass(annotation):
        return schema_of(annotation)
    return Any


def config_value(value: Any) -> Any:
    """A default as the config holds it: tuples as lists, nested settings as their schema."""
    if isinstance(value, tuple):
        return [config_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        values = {name: config_value(getattr(value, name)) for name in config_keys(type(value))}
        return schema_of(type(value))(**values)
    return value


def config_keys(cls: type) -> list[str]:
    """The fields of a settings class that are config keys."""
    skipped = NOT_CONFIG_KEYS.get(cls, ())
    return [spec.name for spec in dataclasses.fields(cls) if spec.init and spec.name not in skipped]


@functools.cache
def schema_of(cls: type) -> type:
    """A structured-config dataclass mirroring the settings dataclass ``cls``: the same keys and
    defaults, with types OmegaConf checks (a required field is ``???``)."""
    hints = typing.get_type_hints(cls)
    specs = {spec.name: spec for spec in dataclasses.fields(cls)}
    fields = []
    for name in config_keys(cls):
        spec = specs[name]
        if spec.default is not dataclasses.MISSING:
            default = config_value(spec.default)
        elif spec.default_factory is not dataclasses.MISSING:
            default = config_value(spec.default_factory())
        else:
            default = MISSING
        if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
            entry = dataclasses.field(default_factory=functools.partial(copy.deepcopy, default))
        else:
            entry = dataclasses.field(default=default)
        fields.append((name, config_type(hints[name]), entry))
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)


StackConfig = schema_of(StackSettings)
MasksConfig = schema_of(MaskSettings)
CompositeSettingsConfig = schema_of(CompositeSettings)
ClusterConfig = schema_of(ClusterSettings)
EvaluationConfig = schema_of(EvaluationSettings)
QuicklookConfig = schema_of(QuicklookSettings)


@dataclasses.dataclass
class CompositeConfig:
    """The whole of ``conf/composite.yaml`` (conf/README.md lists every key)."""

    stack: StackConfig = dataclasses.field(default_factory=StackConfig)
    masks: MasksConfig = dataclasses.field(default_factory=MasksConfig)
    composite: CompositeSettingsConfig = dataclasses.field(default_factory=CompositeSettingsConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    quicklook: QuicklookConfig = dataclasses.field(default_factory=QuicklookConfig)
    #: The trained checkpoint (``masks.source=model``); its sha256 keys the mask cache.
    ckpt: Optional[str] = None  # noqa: UP045
    #: The run's folders: set in the YAML from ``paths``.
    out_dir: Optional[str] = MISSING  # noqa: UP045  (None when composed outside a run)
    work_dir: str = MISSING
    progress: bool = True
    task_name: str = "composite"
    tags: list[str] = dataclasses.field(default_factory=lambda: ["composite"])
    #: The ``paths`` and ``logger`` groups (shared with training).
    paths: Any = None
    logger: Any = None


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (``composite_schema``)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=CompositeConfig)
