"""What the temporal test changed, as pictures: a bar chart of which source excluded the
observations and a map layer of where (from ``exclusion_sources.tif``, see
:mod:`composite.outputs`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rasterio.warp import transform_bounds  # noqa: E402

from cloudseg.sentinel2.cog import atomic_path  # noqa: E402
from composite.quicklook import png_bytes, read_band_values_preview  # noqa: E402
from composite.temporal_rules import SOURCE_NAMES  # noqa: E402
from composite.webmap import MapLayer  # noqa: E402

CHART = "exclusion_sources.png"
#: Bar colours by source; the map layer uses the same for its channels.
SOURCE_COLORS = {
    "model": "#377eb8",
    "temporal": "#e41a1c",
    "both": "#984ea3",
    "overruled": "#4daf4a",
}
SOURCE_LABELS = {
    "model": "single-date\nmask only",
    "temporal": "temporal\ntest only",
    "both": "both",
    "overruled": "single-date call\noverruled by the test",
}
#: Map layer channels: red = temporal only, green = overruled, blue = model only.
MAP_CHANNELS = ("temporal", "overruled", "model")


def sources_chart(excluded_by: Mapping[str, int], path: str | os.PathLike, title: str) -> Path:
    """A bar chart of the observations each source excluded (``run.json``'s
    ``temporal.excluded_by``), written atomically to ``path``."""
    names = [name for name in SOURCE_NAMES if name in excluded_by]
    values = [int(excluded_by[name]) for name in names]
    figure, axes = plt.subplots(figsize=(5.5, 3.0), dpi=100)
    bars = axes.bar(
        [SOURCE_LABELS[n] for n in names], values, color=[SOURCE_COLORS[n] for n in names]
    )
    axes.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8)
    axes.set_ylabel("observations")
    axes.set_title(title, fontsize=10)
    axes.tick_params(axis="x", labelsize=8)
    axes.margins(y=0.15)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def sources_map_layer(
    path: str | os.PathLike, *, max_size: int = 1024, visible: bool = False
) -> tuple[MapLayer, tuple[float, float, float, float]]:
    """A map layer of ``exclusion_sources.tif``: per pixel, red = observations only the temporal
    test excluded, green = single-date calls it overruled, blue = only the single-date mask
    excluded, each scaled to its largest count; transparent where nothing changed."""
    planes = []
    for name in MAP_CHANNELS:
        values, (left, bottom, right, top) = read_band_values_preview(
            path, SOURCE_NAMES.index(name) + 1, max_size, crs="EPSG:3857"
        )
        planes.append(np.nan_to_num(values))
    counts = np.stack(planes, axis=-1)
    scale = np.maximum(counts.reshape(-1, 3).max(axis=0), 1)
    rgba = np.zeros((*counts.shape[:2], 4), np.uint8)
    rgba[..., :3] = np.round(255 * np.sqrt(counts / scale)).astype(np.uint8)
    rgba[..., 3] = np.where(counts.sum(axis=-1) > 0, 255, 0)
    bounds = transform_bounds("EPSG:3857", "EPSG:4326", left, bottom, right, top)
    name = (
        "exclusion sources (red: temporal test only, green: single-date calls overruled, "
        "blue: single-date mask only)"
    )
    return MapLayer(name, png_bytes(rgba), visible), bounds
