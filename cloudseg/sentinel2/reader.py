"""Read one Sentinel-2 scene, for a chosen band list, onto one grid, one window at a time.

``open_scene`` accepts a multi-band GeoTIFF, a folder or SAFE of per-band files (JP2 or GeoTIFF,
mixed 10/20/60 m), or a STAC item (JSON path, URL or ``pystac.Item``), and returns a
:class:`Scene`. A scene opens its band files lazily and reads only the pixels a request needs:
each band is brought onto the target grid by GDAL's warper (rasterio ``WarpedVRT``), bilinear for
spectral bands and nearest for classes (SCL). Where the target grid is the band's own pixel grid
(same CRS, pixel size and pixel-aligned origin) the pixels are read as they are, with no
resampling. DN 0 is nodata throughout.

Example::

    with open_scene("S2A_MSIL2A_...SAFE") as scene:
        grid = scene.grid(20)                        # 20 m grid over the scene
        window = rasterio.windows.Window(0, 0, 1024, 1024)
        dn = scene.read(["B02", "B8A", "SCL"], grid=grid, window=window)   # (3, 1024, 1024) uint16
        reflectance = scene.read_reflectance(["B02", "B8A"], grid=grid, window=window)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, WindowError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from cloudseg.sentinel2.bands import AUXILIARY_LAYERS, is_categorical, resolve_bands
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import NODATA_DN, dn_to_reflectance, harmonize_dn
from cloudseg.sentinel2.sources import (
    RASTER_SUFFIXES,
    LayerSource,
    SceneDescription,
    SceneError,
    describe_folder,
    describe_raster,
    is_remote,
)
from cloudseg.sentinel2.stac import describe_item, load_item

#: Source data types the reader returns as uint16 DN without loss.
DN_DTYPES: frozenset[str] = frozenset({"uint8", "uint16"})

__all__ = ["Scene", "SceneError", "describe_source", "open_scene"]


def open_scene(
    source: str | os.PathLike | pystac.Item,
    *,
    band_names: Iterable[str] | None = None,
    offset: float | None = None,
) -> Scene:
    """Open a Sentinel-2 scene for windowed reading; nothing but file headers is read yet.

    Args:
        source: a raster file (multi-band GeoTIFF, or a single band file), a folder of per-band
            files or a SAFE (or one of its granules), a STAC item JSON (path or URL) or a
            ``pystac.Item``.
        band_names: names of a raster file's bands in file order, for files whose band
            descriptions do not carry them.
        offset: the DN offset (reflectance = (DN + offset) / 10000), overriding what the
            metadata says; without it the metadata decides, and 0 when it says nothing.
    """
    return Scene(describe_source(source, band_names=band_names), offset=offset)


def describe_source(
    source: str | os.PathLike | pystac.Item, band_names: Iterable[str] | None = None
) -> SceneDescription:
    """Find out what kind of source ``source`` is and describe its layers and metadata."""
    if isinstance(source, pystac.Item):
        kind, text = "STAC item", source.get_self_href() or source.id
    else:
        text = os.fspath(source)
        if text.lower().endswith(".json") or _is_remote_item(text):
            kind = "STAC item"
        elif Path(text).is_dir():
            kind = "folder"
        elif is_remote(text) or Path(text).is_file():
            kind = "raster"
        else:
            raise SceneError(
                f"{text} does not exist; open a raster file, a folder or SAFE of band files, "
                "or a STAC item (.json path or URL)."
            )
    if band_names is not None and kind != "raster":
        raise SceneError(
            f"band_names= names the bands of a single raster file, but {text} is a {kind}, "
            "whose bands are named by its files or assets; leave band_names out."
        )
    if kind == "STAC item":
        return describe_item(load_item(source))
    if kind == "folder":
        return describe_folder(Path(text))
    return describe_raster(text, None if band_names is None else list(band_names))


def _is_remote_item(text: str) -> bool:
    """A URL that is not a raster file, such as a STAC API item URL (``.../items/<id>``)."""
    if not is_remote(text) or text.startswith("/vsi"):
        return False
    return Path(urlparse(text).path).suffix.lower() not in RASTER_SUFFIXES


class Scene:
    """One Sentinel-2 scene whose layers can be read onto any grid, window by window.

    Attributes:
        source: what was opened (a path, URL or STAC item id), for messages.
        metadata: what the source says about the acquisition, where known: ``datetime``
            (UTC), ``date``, ``tile_id`` (MGRS, e.g. ``"31TDH"``), ``processing_baseline``,
            ``sun_azimuth``/``sun_elevation`` (degrees), ``spacecraft``, ``product_type``.
        offset: the DN offset used by :meth:`read_reflectance` (explicit, else from the
            metadata, else 0).

    Band files are opened on first use and kept open; :meth:`close` (or ``with``) closes them.
    A scene pickles without its open files (they reopen lazily), so it can be sent to workers;
    use one scene per thread.
    """

    def __init__(self, description: SceneDescription, offset: float | None = None) -> None:
        self.source = description.source
        self.metadata: dict[str, Any] = dict(description.metadata)
        if offset is None:
            offset = description.offset if description.offset is not None else 0.0
        self.offset = float(offset)
        self._layers = dict(description.layers)
        self._datasets: dict[str, DatasetReader] = {}
        self._native_grid: Grid | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        """Available layers by canonical name: spectral bands, then SCL/AOT/WVP if present."""
        return tuple(self._layers)

    @property
    def layers(self) -> Mapping[str, LayerSource]:
        """Where each layer is read from (file or URL and band index)."""
        return MappingProxyType(self._layers)

    def layer_grid(self, band: str) -> Grid:
        """The native grid of one layer (declared by the source, else read from its header)."""
        (name,) = self._resolve([band])
        return self._layer_grid(self._layers[name])

    def grid(self, resolution: float | None = None) -> Grid:
        """The native grid of the finest layer, or the same extent at ``resolution`` metres."""
        if self._native_grid is None:
            grids = [self._layer_grid(layer) for layer in self._layers.values()]
            self._native_grid = min(grids, key=lambda grid: grid.resolution)
        if resolution is None:
            return self._native_grid
        return self._native_grid.with_resolution(resolution)

    def read(
        self, bands: Iterable[str] | str, grid: Grid | None = None, window: Window | None = None
    ) -> np.ndarray:
        """DN of ``bands`` on ``grid`` (default: :meth:`grid`), or on a ``window`` of it.

        Returns ``(n_bands, y, x)`` uint16 with 0 for nodata (also outside the scene). Spectral
        bands are resampled bilinearly, classes (SCL) by nearest neighbour; only the source
        pixels under the requested window are read.
        """
        names = self._resolve(bands)
        target = self._target_grid(names, grid, window)
        out = np.zeros((len(names), *target.shape), dtype=np.uint16)
        for index, name in enumerate(names):
            out[index] = self._read_layer(self._layers[name], target)
        return out

    def read_reflectance(
        self,
        bands: Iterable[str] | str,
        grid: Grid | None = None,
        window: Window | None = None,
        harmonize: bool = True,
    ) -> np.ndarray:
        """Reflectance (float32, NaN nodata) of spectral ``bands``, with :attr:`offset` applied.

        With ``harmonize`` (default) DN are first shifted onto the pre-04.00 scale with values
        that would reach 0 or below clipped to DN 1 (as Sentinel Hub and Planetary Computer
        harmonise), so scenes of every baseline agree and stay non-negative; without it the
        result is exactly (DN + offset) / 10000, which can be negative over dark surfaces.
        """
        names = self._resolve(bands)
        not_reflectance = [name for name in names if name in AUXILIARY_LAYERS]
        if not_reflectance:
            raise SceneError(
                f"{not_reflectance} of {self.source} are not reflectance bands; "
                "read them as stored with Scene.read()."
            )
        dn = self.read(names, grid=grid, window=window)
        if harmonize:
            return dn_to_reflectance(harmonize_dn(dn, self.offset))
        return dn_to_reflectance(dn, self.offset)

    def close(self) -> None:
        """Close the band files opened so far (a later read reopens them)."""
        for dataset in self._datasets.values():
            dataset.close()
        self._datasets.clear()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_datasets": {}}

    def __repr__(self) -> str:
        return f"Scene({self.source!r}, bands={list(self.bands)}, offset={self.offset:g})"

    def _resolve(self, bands: Iterable[str] | str) -> tuple[str, ...]:
        """Canonical names of ``bands``; typos and bands this scene lacks are clear errors."""
        try:
            names = resolve_bands(bands)
        except ValueError as err:
            raise SceneError(f"{err} {self.source} has {list(self.bands)}.") from err
        missing = [name for name in names if name not in self._layers]
        if missing:
            raise SceneError(
                f"{self.source} has no band {', '.join(missing)}; it has {list(self.bands)}."
            )
        return names

    def _target_grid(
        self, names: tuple[str, ...], grid: Grid | None, window: Window | None
    ) -> Grid:
        """The grid to read onto; it must overlap every requested layer."""
        target = grid if grid is not None else self.grid()
        if window is not None:
            target = target.window_grid(window)
        for name in names:
            layer_grid = self._layer_grid(self._layers[name])
            if not target.overlaps(layer_grid):
                raise SceneError(
                    f"The requested grid (bounds {_format_bounds(target.bounds)} in {target.crs}) "
                    f"does not overlap band {name} of {self.source} (bounds "
                    f"{_format_bounds(layer_grid.bounds)} in {layer_grid.crs}); "
                    "use scene.grid() or a window of it."
                )
        return target

    def _layer_grid(self, layer: LayerSource) -> Grid:
        return layer.grid if layer.grid is not None else Grid.from_dataset(self._dataset(layer))

    def _dataset(self, layer: LayerSource) -> DatasetReader:
        if layer.path not in self._datasets:
            try:
                self._datasets[layer.path] = rasterio.open(layer.path)
            except RasterioError as err:
                raise SceneError(
                    f"Cannot open {layer.path} (band {layer.name} of {self.source}): {err}"
                ) from err
        return self._datasets[layer.path]

    def _read_layer(self, layer: LayerSource, target: Grid) -> np.ndarray:
        """One layer on ``target``: a plain read where aligned, else a warped read."""
        dataset = self._dataset(layer)
        dtype = dataset.dtypes[layer.band_index - 1]
        if dtype not in DN_DTYPES:
            raise SceneError(
                f"{layer.path} holds {dtype} data for band {layer.name}; the reader expects "
                "Sentinel-2 DN as uint16 (or uint8 for classes)."
            )
        nodata = dataset.nodatavals[layer.band_index - 1]
        nodata = NODATA_DN if nodata is None else nodata
        try:
            window = aligned_window(Grid.from_dataset(dataset), target)
            if window is not None:
                data = read_padded(dataset, layer.band_index, window, fill=nodata)
                data[data == nodata] = NODATA_DN
            else:
                data = _read_warped(dataset, layer, target, nodata)
        except RasterioError as err:
            cause = f" ({err.__cause__})" if err.__cause__ else ""
            raise SceneError(
                f"Cannot read {layer.path} (band {layer.name} of {self.source}): {err}{cause} "
                "The file is damaged or incomplete; download or write it again."
            ) from err
        return data


def _read_warped(
    dataset: DatasetReader, layer: LayerSource, target: Grid, nodata: float
) -> np.ndarray:
    """Warp one layer onto ``target`` with GDAL, then round to integer DN.

    Two settings make a window read the same values as the same region of a full read: the
    resampling scale is fixed for the whole grid (GDAL otherwise estimates it per chunk, which
    changes the downsampling kernel), and GDAL warps into float32 with the rounding (half up, as
    GDAL's own) done here (GDAL's integer path rounds ties differently per window).
    """
    resampling = Resampling.nearest if is_categorical(layer.name) else Resampling.bilinear
    with WarpedVRT(
        dataset,
        crs=target.crs,
        transform=target.transform,
        width=target.width,
        height=target.height,
        resampling=resampling,
        src_nodata=nodata,
        nodata=NODATA_DN,
        dtype="float32",
        **_fixed_scale(Grid.from_dataset(dataset), target),
    ) as vrt:
        warped = vrt.read(layer.band_index)
    np.floor(np.add(warped, 0.5, out=warped), out=warped)  # in place: windows can be large
    return np.clip(warped, 0, np.iinfo(np.uint16).max, out=warped).astype(np.uint16)


def _fixed_scale(source: Grid, target: Grid) -> dict[str, float]:
    """GDAL warp options ``XSCALE``/``YSCALE`` (target pixels per source pixel) where both grids
    are projected, so the ratio is the same everywhere; otherwise GDAL estimates it."""
    if not (source.crs.is_projected and target.crs.is_projected):
        return {}
    source_size = source.resolution * source.crs.linear_units_factor[1]
    target_size = target.resolution * target.crs.linear_units_factor[1]
    scale = source_size / target_size
    return {"XSCALE": scale, "YSCALE": scale}


def aligned_window(source: Grid, target: Grid, tolerance: float = 1e-6) -> Window | None:
    """The window of ``source`` pixels that ``target`` is exactly, or ``None`` if it is not.

    ``target`` must share the CRS and pixel size, with its origin on a ``source`` pixel corner;
    the window may extend past the source (those pixels are nodata).
    """
    src, dst = source.transform, target.transform
    if source.crs != target.crs or any(value != 0 for value in (src.b, src.d, dst.b, dst.d)):
        return None
    if not (math.isclose(src.a, dst.a, rel_tol=1e-9) and math.isclose(src.e, dst.e, rel_tol=1e-9)):
        return None
    col, row = (dst.c - src.c) / src.a, (dst.f - src.f) / src.e
    if abs(col - round(col)) > tolerance or abs(row - round(row)) > tolerance:
        return None
    return Window(round(col), round(row), target.width, target.height)


def read_padded(dataset: DatasetReader, band_index: int, window: Window, fill: float) -> np.ndarray:
    """Read ``window`` of one band, filling the part outside the raster with ``fill``."""
    out = np.full(
        (int(window.height), int(window.width)), fill, dtype=dataset.dtypes[band_index - 1]
    )
    try:
        inside = window.intersection(Window(0, 0, dataset.width, dataset.height))
    except WindowError:
        return out  # entirely outside
    row = int(inside.row_off - window.row_off)
    col = int(inside.col_off - window.col_off)
    out[row : row + int(inside.height), col : col + int(inside.width)] = dataset.read(
        band_index, window=inside
    )
    return out


def _format_bounds(bounds: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{value:.1f}" for value in bounds) + ")"
