"""The cloud-mask classes (the CloudSEN12 scheme), named once for code, configs, metrics and docs."""

from __future__ import annotations

CLEAR = 0
THICK_CLOUD = 1
THIN_CLOUD = 2
CLOUD_SHADOW = 3
IGNORE_INDEX = 255

CLASS_NAMES: tuple[str, ...] = ("clear", "thick_cloud", "thin_cloud", "cloud_shadow")
NUM_CLASSES = len(CLASS_NAMES)
CLASS_BY_NAME: dict[str, int] = {name: code for code, name in enumerate(CLASS_NAMES)}

#: Colours for figures and quicklooks (RGB 0-255), by class code.
CLASS_COLORS: dict[int, tuple[int, int, int]] = {
    CLEAR: (0, 0, 0),
    THICK_CLOUD: (255, 255, 255),
    THIN_CLOUD: (0, 200, 255),
    CLOUD_SHADOW: (255, 120, 0),
    IGNORE_INDEX: (255, 0, 255),
}

#: The classes a composite excludes by default.
DEFAULT_EXCLUDED: tuple[str, ...] = ("thick_cloud", "thin_cloud", "cloud_shadow")


def class_codes(names: list[str] | tuple[str, ...]) -> list[int]:
    """Class names -> codes, with a clear error for a name that is not a class."""
    unknown = [n for n in names if n not in CLASS_BY_NAME]
    if unknown:
        raise ValueError(f"Unknown class names {unknown}; valid: {list(CLASS_NAMES)}.")
    return [CLASS_BY_NAME[n] for n in names]
