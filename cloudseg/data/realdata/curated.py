"""Curated real labels: real scenes labeled where the offline detectors agree.

Each scene's training half is labeled with the detectors' consensus
(:func:`cloudseg.detectors.consensus.reference_map`: clear, cloud (written ``thick_cloud``) or
shadow where every detector that can answer agrees) and **ignore (255) wherever they disagree**,
so a model is never taught one detector's mistake. Scenes where fewer than
:data:`MIN_DETECTORS` detectors run (4-band chips: ukis-csmask alone) are not labeled: one
detector is no consensus. A curation list (:class:`~cloudseg.data.importers.curation.CurationList`,
``scene_id,decision,reason``) accepts or rejects each scene as the seed did by eye; scenes it does
not name stay ``pending`` (listed, not trained on).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from cloudseg.data.importers.curation import CurationList
from cloudseg.data.manifest import MANIFEST_NAME, DatasetWriter
from cloudseg.data.realdata.detectors import detections, run_detectors
from cloudseg.data.realdata.scenes import LoadedScene, training_columns
from cloudseg.detectors.consensus import DISPUTED, reference_map
from cloudseg.labels import IGNORE_INDEX
from cloudseg.sentinel2.radiometry import reflectance_to_dn

MIN_DETECTORS = 2
DEFAULT_STATUS = "pending"


def consensus_labels(masks: dict[str, np.ndarray]) -> np.ndarray:
    """Class labels where the detectors agree, ignore (255) where they disagree or are silent."""
    labels = reference_map(detections(masks))
    labels[labels == DISPUTED] = IGNORE_INDEX
    return labels


def scene_id(scene: LoadedScene) -> str:
    return scene.name.replace("/", "-")


def write_curated_set(
    scenes: list[LoadedScene],
    out: str | os.PathLike,
    curation: CurationList | None = None,
    verbose: bool = True,
) -> Path:
    """Write the consensus-labeled training halves of ``scenes`` to a dataset at ``out``."""
    out = Path(out)
    with DatasetWriter(out) as writer:
        for scene in scenes:
            masks = run_detectors(scene)
            if len(masks) < MIN_DETECTORS:
                if verbose:
                    print(f"curated: {scene.name} skipped: only {sorted(masks)} can run on its "
                          f"bands {list(scene.bands)}; a consensus needs {MIN_DETECTORS}")  # fmt: skip
                continue
            columns = training_columns(scene.grid.width)
            labels = consensus_labels({name: mask[:, columns] for name, mask in masks.items()})
            identifier = scene_id(scene)
            decision = curation.decide(identifier, DEFAULT_STATUS) if curation is not None else None
            writer.add(
                identifier,
                reflectance_to_dn(scene.reflectance[:, :, columns]),
                labels,
                scene.grid.window_grid(Window(0, 0, columns.stop, scene.grid.height)),
                scene.bands,
                site=identifier, date="", label_source="consensus",
                curation=decision.status if decision else DEFAULT_STATUS,
                curation_reason=decision.reason if decision else "", split="train",
                tags={"DETECTORS": " ".join(sorted(masks))},
            )  # fmt: skip
            if verbose:
                labeled = float((labels != IGNORE_INDEX).mean())
                status = decision.status if decision else DEFAULT_STATUS
                print(f"curated: {scene.name}: {labeled:.0%} labeled by {sorted(masks)}, {status}")
    if curation is not None and curation.unused() and verbose:
        print(f"curated: the curation list names scenes not found: {curation.unused()}")
    return out / MANIFEST_NAME
