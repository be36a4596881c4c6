"""Fixtures for the stack / masking / driver tests: a tiny deterministic stack of GeoTIFF scenes.

Each scene is a multi-band uint16 GeoTIFF written by ``write_cog`` the way the simulator writes
them (band names as descriptions, nodata 0, tags SENSING_TIME, PROCESSING_BASELINE, TILE_ID,
SPACECRAFT), with an L2A-style SCL band marking its clouds and shadows, so the ``scl`` mask source
and the ``none`` source both apply. Scenes from 2022-01-25 on carry baseline 04.00 and the
+1000 DN offset, so harmonisation matters.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid

BANDS = ("B02", "B03", "B04", "B08")
#: Surface reflectance scale per band (vegetation-like: NIR bright).
BAND_LEVELS = np.array([0.06, 0.07, 0.05, 0.30], dtype=np.float32)[:, None, None]
SCL_CLEAR, SCL_SHADOW, SCL_CLOUD = 4, 3, 9
ORIGIN = (399960.0, 4800000.0)  # UTM 31N, near 3 deg E


def utm_grid(height: int, width: int, resolution: float = 10.0) -> Grid:
    return Grid(
        "EPSG:32631", Affine(resolution, 0, ORIGIN[0], 0, -resolution, ORIGIN[1]), height, width
    )


def write_scene(
    path: Path,
    reflectance: np.ndarray,
    grid: Grid,
    sensing_time: dt.datetime,
    *,
    bands: Sequence[str] = BANDS,
    scl: np.ndarray | None = None,
    spacecraft: str = "Sentinel-2A",
    tile: str = "31TDH",
) -> Path:
    """A scene GeoTIFF; NaN reflectance is nodata (DN 0); baseline from the date."""
    baseline = "04.00" if sensing_time.date() >= dt.date(2022, 1, 25) else "02.14"
    offset = 1000 if baseline == "04.00" else 0
    dn = np.rint(np.nan_to_num(reflectance, nan=0.0) * 10000) + offset
    dn = np.where(np.isnan(reflectance), 0, np.clip(dn, 1, 65535)).astype(np.uint16)
    names = list(bands)
    if scl is not None:
        dn = np.concatenate([dn, scl[np.newaxis].astype(np.uint16)])
        names.append("SCL")
    tags = {
        "SENSING_TIME": sensing_time.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "PROCESSING_BASELINE": baseline,
        "TILE_ID": tile,
        "SPACECRAFT": spacecraft,
    }
    return write_cog(path, dn, grid, nodata=0, band_names=names, tags=tags)


@dataclass
class TinyStack:
    """A written stack and its truth: the clear surface and each date's cloud/shadow masks."""

    folder: Path
    paths: list[Path]
    dates: list[dt.datetime]
    grid: Grid
    surface: np.ndarray  # (bands, y, x) reflectance
    cloud: np.ndarray  # (dates, y, x) bool
    shadow: np.ndarray  # (dates, y, x) bool
    nodata: np.ndarray  # (dates, y, x) bool


def make_tiny_stack(
    folder: Path,
    n_dates: int = 10,
    size: int = 64,
    seed: int = 0,
    start: dt.date = dt.date(2021, 11, 1),
) -> TinyStack:
    """``n_dates`` scenes 20 days apart (mixing baselines across 2022-01-25), with drifting
    bright clouds, darker shadows beside them and one scene half outside its swath."""
    rng = np.random.default_rng(seed)
    grid = utm_grid(size, size)
    y, x = np.mgrid[0:size, 0:size]
    texture = 1.0 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0)
    surface = (BAND_LEVELS * texture).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    paths, dates, clouds, shadows, nodatas = [], [], [], [], []
    for t in range(n_dates):
        when = dt.datetime.combine(
            start + dt.timedelta(days=20 * t), dt.time(10, 30), tzinfo=dt.UTC
        )
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(size / 6, size / 3.5)
        cloud = (y - cy) ** 2 + (x - cx) ** 2 < radius**2
        shadow = ((y - cy - radius) ** 2 + (x - cx - radius) ** 2 < (radius / 1.2) ** 2) & ~cloud
        nodata = (x > size - size // 4) if t == 3 else np.zeros_like(cloud)
        noise = rng.normal(0, 0.003, surface.shape).astype(np.float32)
        reflectance = surface + noise
        reflectance = np.where(cloud, 0.55 + noise, reflectance)
        reflectance = np.where(shadow, reflectance * 0.35, reflectance)
        reflectance = np.where(nodata, np.nan, reflectance).astype(np.float32)
        scl = np.full((size, size), SCL_CLEAR, dtype=np.uint8)
        scl[cloud] = SCL_CLOUD
        scl[shadow] = SCL_SHADOW
        scl[nodata] = 0
        path = write_scene(folder / f"{when.date()}.tif", reflectance, grid, when, scl=scl)
        paths.append(path)
        dates.append(when)
        clouds.append(cloud)
        shadows.append(shadow)
        nodatas.append(nodata)
    return TinyStack(
        folder, paths, dates, grid, surface, np.array(clouds), np.array(shadows), np.array(nodatas)
    )


@pytest.fixture
def tiny_stack(tmp_path: Path) -> TinyStack:
    """10 dates x 64 x 64 px, 4 bands + SCL, in ``tmp_path/scenes``."""
    return make_tiny_stack(tmp_path / "scenes")


@pytest.fixture
def kill_after(monkeypatch) -> Callable[[int], Callable[[], None]]:
    """``restore = kill_after(n)``: the composite's window tasks raise ``KeyboardInterrupt``
    after ``n`` finished windows (a killed run); ``restore()`` puts the real task back."""
    from composite import driver

    real_compute = driver.compute_window

    def install(n_windows: int) -> Callable[[], None]:
        finished = []

        def killed(job, item):
            if len(finished) == n_windows:
                raise KeyboardInterrupt("killed")
            finished.append(item[0])
            return real_compute(job, item)

        monkeypatch.setattr(driver, "compute_window", killed)
        return lambda: monkeypatch.setattr(driver, "compute_window", real_compute)

    return install


@pytest.fixture
def make_stack() -> Callable[..., TinyStack]:
    """``make_stack(folder, n_dates=10, size=64, seed=0, start=...)``."""
    return make_tiny_stack


@pytest.fixture
def scene_writer() -> Callable[..., Path]:
    """``write_scene(path, reflectance, grid, sensing_time, bands=..., scl=..., ...)``."""
    return write_scene


@pytest.fixture
def grid_of() -> Callable[..., Grid]:
    """``utm_grid(height, width, resolution=10)`` near 3 deg E."""
    return utm_grid


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class HeadlessChromium:
    """Headless Chromium on a local page, offline-friendly: no sync, no background networking,
    a fresh profile, 5 s of virtual time for the page's scripts."""

    executable: str
    profile: Path

    def flags(self) -> list[str]:
        return [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={self.profile}", "--virtual-time-budget=5000",
        ]  # fmt: skip

    def dom(self, page: Path) -> str:
        """The page's DOM after its scripts ran (``--dump-dom``)."""
        command = [self.executable, *self.flags(), "--dump-dom", page.as_uri()]
        return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout

    def screenshot(self, page: Path, path: Path, window_size: str = "800,600") -> Path:
        """A PNG of the rendered page at ``window_size``."""
        command = [self.executable, *self.flags(), f"--screenshot={path}",
                   f"--window-size={window_size}", page.as_uri()]  # fmt: skip
        subprocess.run(command, capture_output=True, timeout=120, check=True)
        return path


@pytest.fixture
def chromium(tmp_path) -> HeadlessChromium:
    """Headless Chromium with a profile in ``tmp_path``; skips where it is not installed."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (make setup installs it as root)")
    return HeadlessChromium(CHROMIUM, tmp_path / "profile")
