"""The app behind ``python composite.py``: the composed config -> settings, and the wiring of the
executor and the reporters around the pipeline (:mod:`composite.pipeline`).

:func:`run_composite` builds the stack, opens the executor (``cluster``), and composites the stack
once with :func:`composite.pipeline.composite_stack`, attaching
:class:`composite.evidence.EvidenceReporter` (baselines, metrics, quicklooks, map page, W&B) as
the reporter ``evidence`` unless the config says ``evaluation=none``. The run holds ``out_dir``
and writes everything into its staging folder, published together at the end
(:class:`composite.publication.RunFolder`): a second run into the same ``out_dir`` stops at once
naming the first, and a failed or killed run leaves the previous complete run as it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cloudseg.inference.spec import InferenceSpec, MaskRule
from composite.cluster import ClusterSettings, Executor, open_executor
from composite.config import register_configs
from composite.driver import CompositeSettings
from composite.evidence.reporter import EvidenceReporter
from composite.evidence.settings import EvidenceSettings, evidence_settings
from composite.masking import MaskSettings
from composite.outputs import CompositeOutputs
from composite.pipeline import CompositeResult, Reporter, composite_stack
from composite.preflight import check_out_dir, check_run_inputs
from composite.publication import RunFolder
from composite.stack import StackSettings, build_stack

log = logging.getLogger(__name__)

register_configs()  # conf/composite.yaml composes from here on (tests, notebooks)

#: What to pass for a mandatory (``???``) key, in the message when it is missing.
REQUIRED_HINTS = {
    "stack.source": "<a folder of scenes, a list of scenes, a STAC item/collection JSON or a "
    "STAC API URL>",
}


@dataclass(frozen=True)
class RunSettings:
    """Everything ``conf/composite.yaml`` holds, checked (see each part's settings class)."""

    stack: StackSettings
    masks: MaskSettings
    composite: CompositeSettings
    cluster: ClusterSettings
    out_dir: str
    work_dir: str
    progress: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    #: Baselines, metrics and pictures after the composite (``None``: none of them).
    evidence: EvidenceSettings | None = None


def settings_from_config(cfg: DictConfig) -> RunSettings:
    """Typed, validated settings from the composed config (values errors name the key)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ValueError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: pass "
            + " ".join(f"{key}={REQUIRED_HINTS.get(key, '...')}" for key in missing)
            + " on the command line (see conf/composite.yaml)."
        )
    container = OmegaConf.to_container(cfg, resolve=True)
    stack = dict(container["stack"])
    masks = dict(container["masks"])
    inference = dict(masks.pop("inference"))
    rule = inference.pop("rule")
    try:
        inference = InferenceSpec(**inference, rule=MaskRule(**rule))
    except ValueError as err:
        raise ValueError(f"masks.inference: {err}") from err
    composite = dict(container["composite"])
    return RunSettings(
        stack=StackSettings(**stack),
        masks=MaskSettings(**masks, checkpoint=container.get("ckpt"), inference=inference),
        composite=CompositeSettings(**composite),
        cluster=ClusterSettings(**container["cluster"]),
        out_dir=str(container["out_dir"]),
        work_dir=str(container["work_dir"]),
        progress=bool(container.get("progress", True)),
        config=container,
        evidence=evidence_settings(container),
    )


def run_reporters(
    settings: RunSettings, executor: Executor, work_dir: str | Path
) -> dict[str, Reporter]:
    """The reporters the config asks for: ``evidence`` unless ``evaluation=none``."""
    if settings.evidence is None:
        return {}
    evidence = EvidenceReporter(
        settings.evidence,
        masks=settings.masks,
        stack_source=settings.stack.source,
        work_dir=work_dir,
        executor=executor,
        progress=settings.progress,
        config=settings.config,
    )
    return {"evidence": evidence}


def run_composite(
    cfg: DictConfig | RunSettings, reporters: Mapping[str, Reporter] | None = None
) -> CompositeResult:
    """Build the stack, mask it, composite it and write the outputs (``python composite.py``);
    ``reporters`` run after the ones the config asks for."""
    settings = cfg if isinstance(cfg, RunSettings) else settings_from_config(cfg)
    check_out_dir(settings.out_dir)
    check_run_inputs(settings.masks, settings.evidence)
    with RunFolder(settings.out_dir, settings.work_dir) as folder:
        started = time.perf_counter()
        stack = build_stack(settings.stack, progress=settings.progress)
        stack_s = time.perf_counter() - started
        with open_executor(settings.cluster) as executor:
            result = composite_stack(
                stack,
                settings.masks,
                settings.composite,
                out_dir=folder.staging,
                work_dir=folder.work_dir,
                executor=executor,
                bbox=settings.stack.bbox,
                config=settings.config,
                reporters={
                    **run_reporters(settings, executor, folder.work_dir),
                    **(reporters or {}),
                },
                progress=settings.progress,
                timing_s={"stack": stack_s},
            )
        folder.publish()
    result = published_result(result, folder)
    log.info("Composite written to %s", result.outputs.out_dir)
    return result


def published_result(result: CompositeResult, folder: RunFolder) -> CompositeResult:
    """``result`` (written into the staging folder) with its published paths and record."""
    staged = result.outputs
    outputs = CompositeOutputs(
        out_dir=folder.out_dir,
        composite=folder.published(staged.composite),
        count=folder.published(staged.count),
        provenance=folder.published(staged.provenance) if staged.provenance else None,
        run_json=folder.published(staged.run_json),
    )
    record = json.loads(outputs.run_json.read_text())
    return replace(result, outputs=outputs, record=record)
