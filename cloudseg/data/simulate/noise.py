"""Coherent and white noise defined in world coordinates, so any grid over the world agrees.

Every field is a pure function of a pixel's world position (in 10 m pixel units, see
:mod:`cloudseg.data.simulate.scene`) and an integer ``key``: lattice values come from hashing the
lattice coordinates with the key, never from a random-number stream. Two rasters that share pixels
(neighbouring tiles, a scene and a sub-window of it) therefore get bit-identical values there, and
the same key always gives the same world.

* :func:`fractal_noise` sums octaves of quintic-interpolated value noise, each octave rotated
  (randomly, or along a fixed direction and stretched for streaky cirrus and dunes).
* :func:`uniform_field` maps a fractal field through its own (cached) marginal distribution to
  values that are close to uniform on [0, 1], so ``field < 0.3`` covers about 30 % of the world.
* :func:`white_noise` is independent standard-normal-like noise per pixel (sensor noise).
* :func:`cell_uniform` gives one uniform value per integer cell (field parcels, crop types).

The kernels are numba-compiled (``cache=True``) and single-threaded: a 512 x 512 field of eight
octaves takes about 10 ms of one core, so a whole scene renders in a fraction of a second.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numba
import numpy as np

_PRIME_U = np.uint64(0x9E3779B97F4A7C15)
_PRIME_V = np.uint64(0xC2B2AE3D27D4EB4F)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_30 = np.uint64(30)
_SHIFT_27 = np.uint64(27)
_SHIFT_31 = np.uint64(31)
_SHIFT_11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53
_MASK_16 = np.uint64(0xFFFF)
_SHIFT_16 = np.uint64(16)


def stable_key(*parts: object) -> int:
    """A 63-bit key from any printable parts (seed, site id, field name, date...).

    Python's ``hash`` is salted per process; this is the same in every run and on every machine.
    """
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True)
class FieldSpec:
    """The shape of a fractal field.

    ``cell`` is the lattice spacing of the coarsest octave in 10 m pixels (features about that
    big); each further octave divides it by ``lacunarity`` and multiplies the amplitude by
    ``persistence``. ``angle_deg=None`` rotates every octave randomly (isotropic texture); a
    fixed angle with ``stretch > 1`` elongates features along that direction (cirrus, dunes).
    """

    cell: float
    octaves: int
    persistence: float = 0.5
    lacunarity: float = 2.0
    stretch: float = 1.0
    angle_deg: float | None = None

    def __post_init__(self) -> None:
        if self.cell <= 0 or self.octaves < 1 or self.stretch < 1:
            raise ValueError(
                f"Invalid FieldSpec {self}: need cell > 0, octaves >= 1 and stretch >= 1."
            )


@numba.njit(inline="always")
def _mix(h):
    h = (h ^ (h >> _SHIFT_30)) * _MIX_1
    h = (h ^ (h >> _SHIFT_27)) * _MIX_2
    return h ^ (h >> _SHIFT_31)


@numba.njit(inline="always")
def _hash2(iu, iv, key):
    return _mix((np.uint64(iu) * _PRIME_U) ^ (np.uint64(iv) * _PRIME_V) ^ key)


@numba.njit(inline="always")
def _signed_unit(h):
    """A hash -> a float in [-1, 1)."""
    return np.float64(h >> _SHIFT_11) * (2.0 * _TO_UNIT) - 1.0


@numba.njit(inline="always")
def _fade(t):
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


@numba.njit(cache=True)
def _fractal_kernel(cols, rows, cos_a, sin_a, inv_u, inv_v, off_u, off_v, amp, keys, out):
    n_octaves = amp.shape[0]
    for i in range(rows.shape[0]):
        y = rows[i]
        for j in range(cols.shape[0]):
            x = cols[j]
            total = 0.0
            for o in range(n_octaves):
                u = (cos_a[o] * x + sin_a[o] * y) * inv_u[o] + off_u[o]
                v = (cos_a[o] * y - sin_a[o] * x) * inv_v[o] + off_v[o]
                fu = np.floor(u)
                fv = np.floor(v)
                iu = np.int64(fu)
                iv = np.int64(fv)
                su = _fade(u - fu)
                sv = _fade(v - fv)
                key = keys[o]
                v00 = _signed_unit(_hash2(iu, iv, key))
                v10 = _signed_unit(_hash2(iu + 1, iv, key))
                v01 = _signed_unit(_hash2(iu, iv + 1, key))
                v11 = _signed_unit(_hash2(iu + 1, iv + 1, key))
                bottom = v00 + (v10 - v00) * su
                top = v01 + (v11 - v01) * su
                total += amp[o] * (bottom + (top - bottom) * sv)
            out[i, j] = total


@numba.njit(cache=True)
def _white_kernel(cols, rows, key, out):
    scale = 1.0 / (65536.0 * np.sqrt(4.0 / 12.0))
    for i in range(rows.shape[0]):
        iv = np.int64(np.floor(rows[i]))
        for j in range(cols.shape[0]):
            h = _hash2(np.int64(np.floor(cols[j])), iv, key)
            # Irwin-Hall: the sum of four 16-bit uniforms, centred and scaled to unit variance.
            total = 0.0
            for _ in range(4):
                total += np.float64(h & _MASK_16) + 0.5
                h = h >> _SHIFT_16
            out[i, j] = (total - 2.0 * 65536.0) * scale


@numba.njit(cache=True)
def _cell_kernel(cell_u, cell_v, key, out):
    for i in range(cell_u.shape[0]):
        for j in range(cell_u.shape[1]):
            h = _hash2(cell_u[i, j], cell_v[i, j], key)
            out[i, j] = np.float64(h >> _SHIFT_11) * _TO_UNIT


def _octave_parameters(spec: FieldSpec, key: int) -> tuple[np.ndarray, ...]:
    """Per-octave rotation, lattice scale, phase offset, amplitude and hash key."""
    rng = np.random.default_rng(key)
    n = spec.octaves
    if spec.angle_deg is None:
        angles = rng.uniform(0.0, 2.0 * np.pi, n)
    else:
        angles = np.full(n, np.deg2rad(spec.angle_deg)) + rng.normal(0.0, 0.15, n)
    cells = spec.cell / spec.lacunarity ** np.arange(n)
    amplitudes = spec.persistence ** np.arange(n)
    amplitudes = amplitudes / amplitudes.sum()
    offsets = rng.uniform(0.0, 4096.0, (2, n))
    keys = rng.integers(0, np.iinfo(np.int64).max, n, dtype=np.int64).astype(np.uint64)
    return (
        np.cos(angles),
        np.sin(angles),
        1.0 / (cells * spec.stretch),  # along the direction: longer features
        1.0 / cells,
        offsets[0],
        offsets[1],
        amplitudes,
        keys,
    )


def _as_coords(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def fractal_noise(cols: np.ndarray, rows: np.ndarray, spec: FieldSpec, key: int) -> np.ndarray:
    """Fractal value noise on the grid ``rows x cols`` (world pixel centres), float32 in [-1, 1].

    ``cols`` and ``rows`` are 1-D world coordinates in 10 m pixels; the result has shape
    ``(len(rows), len(cols))``. Shifting the coordinates (e.g. by a cloud's shadow displacement)
    samples the same field elsewhere.
    """
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    _fractal_kernel(_as_coords(cols), _as_coords(rows), *_octave_parameters(spec, key), out)
    return out.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _marginal_quantiles(
    octaves: int, persistence: float, lacunarity: float, stretch: float
) -> np.ndarray:
    """Quantiles of a field's values over a large sample of the world (shape-dependent only)."""
    spec = FieldSpec(
        cell=1.0, octaves=octaves, persistence=persistence, lacunarity=lacunarity, stretch=stretch
    )
    sample_axis = np.arange(384) * 0.613  # ~235 coarse cells per axis
    sample = fractal_noise(sample_axis, sample_axis, spec, key=stable_key("marginal"))
    return np.quantile(sample.astype(np.float64), np.linspace(0.0, 1.0, 1025))


def field_quantiles(spec: FieldSpec) -> np.ndarray:
    """1025 quantiles (0, 1/1024, ..., 1) of a ``spec`` field's values over the world."""
    return _marginal_quantiles(spec.octaves, spec.persistence, spec.lacunarity, spec.stretch)


@functools.lru_cache(maxsize=64)
def _uniform_lookup(
    octaves: int, persistence: float, lacunarity: float, stretch: float
) -> tuple[float, float, np.ndarray]:
    """The field's CDF tabulated on a regular grid of values: (first value, 1 / step, table)."""
    quantiles = _marginal_quantiles(octaves, persistence, lacunarity, stretch)
    values = np.linspace(quantiles[0], quantiles[-1], 4097)
    table = np.interp(values, quantiles, np.linspace(0.0, 1.0, quantiles.size))
    return float(values[0]), float(1.0 / (values[1] - values[0])), table


@numba.njit(cache=True)
def _lookup_kernel(values, first, inverse_step, table, out):
    last = table.shape[0] - 1
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            position = (values[i, j] - first) * inverse_step
            if position <= 0.0:
                out[i, j] = table[0]
            elif position >= last:
                out[i, j] = table[last]
            else:
                index = np.int64(position)
                fraction = position - index
                out[i, j] = table[index] + (table[index + 1] - table[index]) * fraction


def to_uniform(values: np.ndarray, spec: FieldSpec) -> np.ndarray:
    """Map values of a ``spec`` field to about-uniform [0, 1] through its marginal distribution."""
    first, inverse_step, table = _uniform_lookup(
        spec.octaves, spec.persistence, spec.lacunarity, spec.stretch
    )
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(values.shape, dtype=np.float32)
    _lookup_kernel(values, first, inverse_step, table, out)
    return out


def uniform_field(cols: np.ndarray, rows: np.ndarray, spec: FieldSpec, key: int) -> np.ndarray:
    """A fractal field with an about-uniform [0, 1] marginal: thresholds read as area fractions."""
    return to_uniform(fractal_noise(cols, rows, spec, key), spec)


def white_noise(cols: np.ndarray, rows: np.ndarray, key: int) -> np.ndarray:
    """Independent noise per world pixel, zero mean and unit variance (bounded at about +-3.5)."""
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    _white_kernel(_as_coords(cols), _as_coords(rows), np.uint64(key), out)
    return out.astype(np.float32)


def cell_uniform(cell_u: np.ndarray, cell_v: np.ndarray, key: int) -> np.ndarray:
    """One uniform [0, 1) value per integer cell ``(cell_u, cell_v)`` (same-shaped int arrays)."""
    cell_u = np.ascontiguousarray(cell_u, dtype=np.int64)
    cell_v = np.ascontiguousarray(cell_v, dtype=np.int64)
    if cell_u.shape != cell_v.shape:
        raise ValueError(f"cell_u {cell_u.shape} and cell_v {cell_v.shape} must match.")
    out = np.empty(cell_u.shape, dtype=np.float64)
    _cell_kernel(cell_u, cell_v, np.uint64(key), out)
    return out.astype(np.float32)
