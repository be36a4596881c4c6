"""A training mix: one dataset folder whose manifest lists the scenes of several others.

Nothing is copied: the mixed manifest points at the source datasets' files by relative paths
(``../simulated/labeled/images/...``), so sources and mix must keep their relative places. Scenes
a source manifest leaves without a split are assigned within that source exactly as the
DataModule would assign them on the source alone (:func:`~cloudseg.data.splits.assign_splits`,
``split_seed``), so a simulated test split stays the same scenes in every mix that contains it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cloudseg.data.manifest import MANIFEST_NAME, read_manifest, write_manifest
from cloudseg.data.splits import assign_splits
from cloudseg.sentinel2.bands import resolve_bands


def write_mixed_dataset(
    out: str | os.PathLike,
    sources: Sequence[str | os.PathLike],
    split_seed: int = 0,
    bands: Sequence[str] | None = None,
) -> Path:
    """Write ``<out>/manifest.csv`` listing every scene of ``sources`` (only those with all of
    ``bands`` when given: a model trains on scenes that have its bands); return its path."""
    if not sources:
        raise ValueError("A mix needs at least one source dataset.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for source in map(Path, sources):
        frame = read_manifest(source)
        if (frame["split"] == "").any():
            frame = assign_splits(frame, seed=split_seed)
        if bands is not None:
            wanted = set(resolve_bands(bands))
            frame = frame[[wanted <= set(names.split()) for names in frame["bands"]]].copy()
        for column in ("image_path", "mask_path"):
            frame[column] = [
                os.path.relpath(source / rel, out) if rel else "" for rel in frame[column]
            ]
        frames.append(frame)
    mixed = pd.concat(frames, ignore_index=True)
    if mixed.empty:
        raise ValueError(f"No scene of {list(map(str, sources))} has the bands {list(bands)}.")
    repeated = mixed.loc[mixed["scene_id"].duplicated(), "scene_id"].tolist()
    if repeated:
        raise ValueError(
            f"Scene ids repeat across the mixed sources {list(map(str, sources))}: {repeated[:5]}; "
            "mix datasets whose scenes are distinct."
        )
    write_manifest(mixed, out)
    read_manifest(out)  # every path resolves from the mix folder
    return out / MANIFEST_NAME
