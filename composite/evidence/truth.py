"""A simulated stack's truth (``stack.json`` next to the scenes): its surfaces and masks, and the
lookups from sensing dates to truth masks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.sentinel2.grid import Grid
from composite.masking import read_classes
from composite.stack import Stack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackTruth:
    """A simulated stack's truth for the scenes of a stack (``stack.json`` of
    :func:`cloudseg.data.simulate.products.write_stack`)."""

    description: Path
    #: Truth surface (reflectance x 10000, offset 0) of each scene, in stack order.
    surfaces: tuple[str, ...]
    #: Sensing dates ``YYYYMMDD`` (as in ``provenance.tif``), ascending, and their truth masks.
    mask_dates: np.ndarray
    mask_paths: tuple[str, ...]


def find_truth(source: str | Sequence[str], stack: Stack) -> StackTruth | None:
    """The truth of ``stack`` when its source is a simulated stack folder (or its ``scenes/``)
    whose ``stack.json`` lists every scene; ``None`` otherwise."""
    if not isinstance(source, str) or not Path(source).is_dir():
        return None
    folder = Path(source)
    candidates = [folder / "stack.json"]
    if folder.name == "scenes":
        candidates.append(folder.parent / "stack.json")
    description = next((path for path in candidates if path.is_file()), None)
    if description is None:
        return None
    root = description.parent
    entries = json.loads(description.read_text())["dates"]
    by_scene = {(root / entry["scene"]).resolve(): entry for entry in entries}
    chosen = []
    for scene in stack.scenes:
        entry = by_scene.get(Path(scene.source).resolve())
        if entry is None:
            log.warning(
                "%s does not list scene %s: no truth metrics for this stack.", description,
                scene.source,
            )  # fmt: skip
            return None
        chosen.append(entry)
    dates = [int(scene.datetime.strftime("%Y%m%d")) for scene in stack.scenes]
    if len(set(dates)) != len(dates):
        log.warning("Two scenes of the stack share a sensing date: no truth metrics.")
        return None
    order = np.argsort(dates)
    return StackTruth(
        description=description,
        surfaces=tuple(str(root / entry["surface"]) for entry in chosen),
        mask_dates=np.asarray(dates, dtype=np.uint32)[order],
        mask_paths=tuple(str(root / chosen[i]["mask"]) for i in order),
    )


def truth_indices(dates: np.ndarray, truth: StackTruth) -> np.ndarray:
    """Provenance dates ``YYYYMMDD`` -> index into ``truth.mask_dates`` (-1 where 0: nodata)."""
    positions = np.searchsorted(truth.mask_dates, dates)
    positions = np.clip(positions, 0, len(truth.mask_dates) - 1)
    picked = dates != 0
    unknown = picked & (truth.mask_dates[positions] != dates)
    if unknown.any():
        raise ValueError(
            f"Provenance date {int(dates[unknown][0])} is not a scene of the truth in "
            f"{truth.description}; was the composite made from another stack?"
        )
    return np.where(picked, positions, -1)


def stack_truth_indices(stack: Stack, truth: StackTruth) -> np.ndarray:
    """Index into ``truth.mask_paths`` of each scene of ``stack``, in stack order."""
    dates = np.array([int(s.datetime.strftime("%Y%m%d")) for s in stack.scenes], np.uint32)
    return truth_indices(dates, truth)


def read_truth_masks(truth: StackTruth, indices: Iterable[int], grid: Grid) -> np.ndarray:
    """``(len(indices), y, x)`` truth classes of the scenes ``indices`` on ``grid``."""
    return np.stack([read_classes(truth.mask_paths[index], grid) for index in indices])
