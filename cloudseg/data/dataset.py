"""Chips for training: scenes of a dataset folder, read by band name, as normalised tensors.

A sample is ``{"image": float32 (bands, y, x) normalised, "mask": int64 (y, x)}`` with 255 where
there is no label or no data. The pipeline per chip: DN window -> reflectance (NaN at DN 0, using
the scene's processing baseline) -> nodata pixels become ignore -> augmentation (optional) ->
:func:`~cloudseg.data.normalization.normalize` (NaN -> 0).

Why not torchgeo's RasterDataset + GeoSampler: they mosaic every file into one CRS and index by
location, while here many dates of one place are separate scenes paired with their own masks,
each in its own UTM zone; sampling pixel windows per scene is the honest fit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
from rasterio.errors import RasterioError
from rasterio.windows import Window
from torch.utils.data import Dataset

from cloudseg.data.importers.sources import assert_same_grid
from cloudseg.data.manifest import LABEL_SOURCES, validate_mask
from cloudseg.data.normalization import normalize
from cloudseg.labels import IGNORE_INDEX
from cloudseg.sentinel2.bands import band_indices, resolve_bands
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import dn_to_reflectance, offset_for_baseline
from cloudseg.sentinel2.sources import SceneError

log = logging.getLogger(__name__)

Transform = Callable[..., dict]


@dataclass(frozen=True)
class SceneRecord:
    """Where one scene's pixels are and how to read the selected bands from it."""

    scene_id: str
    image_path: Path
    mask_path: Path
    band_indexes: tuple[int, ...]  # 1-based rasterio band indexes of the selected bands
    offset: float  # DN offset of the scene's processing baseline
    site: str
    split: str
    height: int
    width: int
    label_source: str = ""


def scene_records(
    root: str | os.PathLike, frame: pd.DataFrame, bands: Sequence[str]
) -> list[SceneRecord]:
    """Records for the manifest rows in ``frame``; checks bands, files and image/mask grids."""
    root = Path(root)
    bands = resolve_bands(bands)
    records = []
    for record in frame.to_dict("records"):
        scene = record["scene_id"]
        where = f"{root / 'manifest.csv'} scene {scene}"
        try:
            indexes = band_indices(bands, record["bands"].split())
        except ValueError as err:
            raise ValueError(f"{where}: {err} Choose bands every scene has.") from err
        image_path, mask_path = root / record["image_path"], root / record["mask_path"]
        for label, path in (("image", image_path), ("mask", mask_path)):
            if not record[f"{label}_path"] or not path.exists():
                raise FileNotFoundError(f"{where}: {label} file {path} does not exist.")
        with (
            opened_layer(scene, "image", image_path) as image,
            opened_layer(scene, "mask", mask_path) as mask,
        ):
            grid = Grid.from_dataset(image)
            assert_same_grid(
                grid, Grid.from_dataset(mask), f"image {image_path}", f"mask {mask_path}"
            )
        baseline = record["processing_baseline"] or None
        records.append(
            SceneRecord(
                scene_id=scene,
                image_path=image_path,
                mask_path=mask_path,
                band_indexes=tuple(i + 1 for i in indexes),
                offset=offset_for_baseline(baseline),
                site=record["site"],
                split=record["split"],
                height=grid.height,
                width=grid.width,
                label_source=record["label_source"],
            )
        )
    return records


def chip_weights(
    records: Sequence[SceneRecord], shares: Mapping[str, float] | None = None
) -> torch.Tensor:
    """The chance of each scene being drawn for a training chip: its share of the area, or with
    ``shares`` (label source -> share of the chips, e.g. ``{"consensus": 0.2}``) the named
    sources' scenes get those shares (by area within each) and the others the rest by area. A
    named source no training scene has is left out with a warning (a mix built without the real
    scenes has no ``consensus`` scenes); a name that is no label source at all is an error."""
    shares = dict(shares or {})
    unknown = sorted(set(shares) - set(LABEL_SOURCES))
    if unknown:
        raise ValueError(
            f"chip_shares names {unknown}, which are not label sources {LABEL_SOURCES}."
        )
    areas = torch.tensor([r.height * r.width for r in records], dtype=torch.float64)
    sources = [r.label_source for r in records]
    area_of: dict[str, float] = {}
    for source, area in zip(sources, areas.tolist(), strict=True):
        area_of[source] = area_of.get(source, 0.0) + area
    absent = sorted(set(shares) - set(area_of))
    if absent:
        log.warning("chip_shares: no training scene has label source %s; drawing by area "
                    "without it (the scenes have %s).", absent, sorted(area_of))  # fmt: skip
    shares = {k: v for k, v in shares.items() if k in area_of}
    if not shares:
        return areas / areas.sum()
    unnamed = [s for s in area_of if s not in shares]
    rest = 1.0 - sum(shares.values())
    if any(v <= 0 for v in shares.values()) or (rest <= 0 if unnamed else abs(rest) > 1e-6):
        raise ValueError(
            f"chip_shares {shares}: each share must be > 0 and together < 1 (the other label "
            f"sources, {unnamed}, share the rest), or exactly 1 when every source is named."
        )
    unnamed_area = sum(area_of[s] for s in unnamed)
    share_of = {s: rest * area_of[s] / unnamed_area for s in unnamed} | shares
    weights = areas * torch.tensor([share_of[s] / area_of[s] for s in sources], dtype=torch.float64)
    return weights / weights.sum()


class SceneReader:
    """Reads windows of the selected bands (uint16 DN) and masks, padding past the scene edge.

    With ``cache`` each scene's selected bands and mask are read once and kept in memory (per
    worker process), e.g. 100 scenes x 13 bands x 512x512 x 2 bytes = 680 MB; otherwise every
    window is a windowed read from the COG.
    """

    def __init__(self, cache: bool = True) -> None:
        self.cache = cache
        self._scenes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def read(
        self, record: SceneRecord, row: int, col: int, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(dn (bands, size, size), mask (size, size))`` of the window at ``row, col``.

        Pixels outside the scene are DN 0 (nodata) and mask 255.
        """
        window = Window(col, row, size, size).intersection(
            Window(0, 0, record.width, record.height)
        )
        if self.cache:
            dn_full, mask_full = self._whole_scene(record)
            rows = slice(window.row_off, window.row_off + window.height)
            cols = slice(window.col_off, window.col_off + window.width)
            dn, mask = dn_full[:, rows, cols], mask_full[rows, cols]
        else:
            dn, mask = self._read_window(record, window)
            validate_mask(mask, f"mask {record.mask_path}")
        return _pad(dn, mask, size)

    def _whole_scene(self, record: SceneRecord) -> tuple[np.ndarray, np.ndarray]:
        if record.scene_id not in self._scenes:
            dn, mask = self._read_window(record, Window(0, 0, record.width, record.height))
            validate_mask(mask, f"mask {record.mask_path}")
            self._scenes[record.scene_id] = (dn, mask)
        return self._scenes[record.scene_id]

    @staticmethod
    def _read_window(record: SceneRecord, window: Window) -> tuple[np.ndarray, np.ndarray]:
        with opened_layer(record.scene_id, "image", record.image_path) as src:
            dn = src.read(list(record.band_indexes), window=window)
        with opened_layer(record.scene_id, "mask", record.mask_path) as src:
            mask = src.read(1, window=window)
        return dn, mask

    def full_scene(self, record: SceneRecord) -> tuple[np.ndarray, np.ndarray]:
        """The whole scene: ``(dn (bands, y, x), mask (y, x))`` (kept in the cache if caching)."""
        if self.cache:
            return self._whole_scene(record)
        dn, mask = self._read_window(record, Window(0, 0, record.width, record.height))
        validate_mask(mask, f"mask {record.mask_path}")
        return dn, mask


@contextlib.contextmanager
def opened_layer(scene_id: str, layer: str, path: Path) -> Iterator[rasterio.DatasetReader]:
    """``rasterio.open(path)`` for the ``layer`` ("image" or "mask") of a scene; a file that
    cannot be opened or read (inside the block) raises SceneError naming the scene, the layer
    and the full path (image and mask files share their base name)."""
    try:
        with rasterio.open(path) as dataset:
            yield dataset
    except RasterioError as err:
        raise SceneError(
            f"Scene {scene_id}: its {layer} file {path} cannot be read ({_first_line(err)}). "
            f"The file is damaged or truncated: write the scene again (re-run the importer or "
            f"cloudfree-simulate), or remove its row from the dataset's manifest.csv."
        ) from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    cause = err.__cause__ or err.__context__
    if text.startswith("Read failed") and cause is not None:  # the GDAL reason is the cause
        text = str(cause).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _pad(dn: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    pad_y, pad_x = size - dn.shape[1], size - dn.shape[2]
    if pad_y == 0 and pad_x == 0:
        return dn, mask
    dn = np.pad(dn, ((0, 0), (0, pad_y), (0, pad_x)), constant_values=0)
    mask = np.pad(mask, ((0, pad_y), (0, pad_x)), constant_values=IGNORE_INDEX)
    return dn, mask


def make_sample(
    dn: np.ndarray,
    mask: np.ndarray,
    offset: float,
    normalization: dict,
    transform: Transform | None = None,
) -> dict[str, torch.Tensor]:
    """DN chip + mask -> normalised image tensor and int64 mask (255 where nodata or unlabeled)."""
    reflectance = dn_to_reflectance(dn, offset)
    mask = mask.copy()
    if transform is not None:
        mask[np.isnan(reflectance).any(axis=0)] = IGNORE_INDEX
        out = transform(image=np.moveaxis(reflectance, 0, -1), mask=mask)
        reflectance = np.moveaxis(out["image"], -1, 0)
        mask = out["mask"]
    mask[np.isnan(reflectance).any(axis=0)] = IGNORE_INDEX
    image = normalize(reflectance, normalization)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)),
        "mask": torch.from_numpy(mask.astype(np.int64)),
    }


class RandomChipDataset(Dataset):
    """``length`` random chips per epoch, scenes drawn in proportion to their area (or with
    ``chip_shares``, per label source: :func:`chip_weights`).

    A chip with less than ``min_labeled_fraction`` labeled pixels is redrawn (up to
    ``max_draws`` times) so batches do not end up all-ignore. Randomness comes from torch's
    generator (seeded per DataLoader worker) and the transform's own generator.
    """

    def __init__(
        self,
        records: Sequence[SceneRecord],
        patch_size: int,
        normalization: dict,
        length: int,
        *,
        transform: Transform | None = None,
        reader: SceneReader | None = None,
        min_labeled_fraction: float = 0.01,
        max_draws: int = 10,
        chip_shares: Mapping[str, float] | None = None,
    ) -> None:
        if not records:
            raise ValueError("RandomChipDataset needs at least one scene.")
        self.records = list(records)
        self.patch_size = patch_size
        self.normalization = normalization
        self.length = length
        self.transform = transform
        self.reader = reader or SceneReader()
        self.min_labeled_fraction = min_labeled_fraction
        self.max_draws = max_draws
        self.weights = chip_weights(self.records, chip_shares)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for _ in range(self.max_draws):
            record = self.records[int(torch.multinomial(self.weights, 1))]
            row = int(torch.randint(0, max(record.height - self.patch_size, 0) + 1, ()))
            col = int(torch.randint(0, max(record.width - self.patch_size, 0) + 1, ()))
            dn, mask = self.reader.read(record, row, col, self.patch_size)
            if (mask != IGNORE_INDEX).mean() >= self.min_labeled_fraction:
                break
        return make_sample(dn, mask, record.offset, self.normalization, self.transform)


class FixedChipDataset(Dataset):
    """The same chips every time: ``chips_per_scene`` windows per scene (validation, test).

    Windows are spread over each scene on a regular grid of patch-size steps and picked with a
    fixed seed, so every epoch evaluates identical pixels.
    """

    def __init__(
        self,
        records: Sequence[SceneRecord],
        patch_size: int,
        normalization: dict,
        chips_per_scene: int,
        *,
        reader: SceneReader | None = None,
        seed: int = 0,
    ) -> None:
        if not records:
            raise ValueError("FixedChipDataset needs at least one scene.")
        self.records = list(records)
        self.patch_size = patch_size
        self.normalization = normalization
        self.reader = reader or SceneReader()
        rng = np.random.default_rng(seed)
        self.windows: list[tuple[int, int, int]] = []
        for scene_index, record in enumerate(self.records):
            rows = _starts(record.height, patch_size)
            cols = _starts(record.width, patch_size)
            grid = [(r, c) for r in rows for c in cols]
            picked = rng.permutation(len(grid))[:chips_per_scene]
            self.windows += [(scene_index, *grid[i]) for i in sorted(picked)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene_index, row, col = self.windows[index]
        record = self.records[scene_index]
        dn, mask = self.reader.read(record, row, col, self.patch_size)
        return make_sample(dn, mask, record.offset, self.normalization)


def _starts(length: int, size: int) -> list[int]:
    """Window starts covering ``length`` with windows of ``size`` (last one flush with the edge)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts
