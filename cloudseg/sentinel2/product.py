"""Which processing level a scene is (L1C top-of-atmosphere or L2A surface reflectance).

Detectors trained per level (ukis-csmask has an ``l1c`` and an ``l2a`` model) need to know. In
order of trust: the product type in the metadata (SAFE ``PRODUCT_TYPE``, STAC ``s2:product_type``
/ ``processing:level``), an SCL layer (only L2A has one), a B10 band (only L1C has one), then an
``L1C``/``L2A`` token in the source's path (``S2A_MSIL2A_...``, ``l2a-29RKH-...``).
"""

from __future__ import annotations

import re

LEVELS: tuple[str, ...] = ("l1c", "l2a")
_LEVEL_TOKEN = re.compile(r"(?:^|[^a-z0-9])(?:msi)?(l1c|l2a)(?:$|[^a-z0-9])", re.IGNORECASE)


def level_from_text(text: str) -> str | None:
    """``"l1c"``/``"l2a"`` from a product type or path (``S2MSI2A``, ``MSIL1C``, ``l2a-...``)."""
    value = str(text or "")
    if re.search(r"S2MSI2A|MSIL2A|LEVEL-?2A", value, re.IGNORECASE):
        return "l2a"
    if re.search(r"S2MSI1C|MSIL1C|LEVEL-?1C", value, re.IGNORECASE):
        return "l1c"
    matches = {match.lower() for match in _LEVEL_TOKEN.findall(value)}
    return matches.pop() if len(matches) == 1 else None


def product_level(scene) -> str | None:
    """The level of ``scene`` (a :class:`~cloudseg.sentinel2.reader.Scene`), ``None`` if unknown."""
    for key in ("product_type", "processing_level"):
        if level := level_from_text(scene.metadata.get(key, "")):
            return level
    if "SCL" in scene.bands:
        return "l2a"
    if "B10" in scene.bands:
        return "l1c"
    return level_from_text(scene.source)
