"""How relief changes the light a slope sends back: sun incidence on slopes (direct plus diffuse
light, so slopes facing away from the sun are dark but never black) and the little 1375 nm (B10)
light that reaches high ground through less water vapour. Split from :mod:`.surface`."""

from __future__ import annotations

import math

import numpy as np

MAX_ILLUMINATION = 1.6  # sun-facing slopes; caps snow on steep slopes at a plausible brightness


def illumination(
    slope_east: np.ndarray, slope_north: np.ndarray, sun_azimuth: float, sun_elevation: float
) -> np.ndarray:
    """Relative irradiance of each slope (1 on flat ground): direct light by incidence angle
    plus a diffuse share, so slopes facing away from the sun are dark but never black."""
    azimuth, elevation = math.radians(sun_azimuth), math.radians(sun_elevation)
    sun_east = math.sin(azimuth) * math.cos(elevation)
    sun_north = math.cos(azimuth) * math.cos(elevation)
    sun_up = math.sin(elevation)
    norm = np.sqrt(1.0 + slope_east**2 + slope_north**2)
    cos_incidence = (-slope_east * sun_east - slope_north * sun_north + sun_up) / norm
    diffuse = 0.25
    direct = np.clip(cos_incidence, 0.0, None) / sun_up
    return np.minimum(diffuse + (1.0 - diffuse) * direct, MAX_ILLUMINATION).astype(np.float32)


def b10_altitude_gain(height_m: np.ndarray) -> np.ndarray:
    """Less water vapour above high ground lets some 1375 nm light back: up to x10 at 3.5 km."""
    return (1.0 + 9.0 * np.clip(height_m / 3500.0, 0.0, 1.0) ** 2).astype(np.float32)
