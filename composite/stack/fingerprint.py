"""A scene's fingerprint: what its files hold, so caches follow content, not path or time.

The fingerprint keys the mask cache (``<scene id>-<fingerprint>.tif``) and, through the run key,
the composite's window files. It is a sha256 over the scene's layers in name order, each layer
contributing its name and

- the STAC asset's ``file:checksum`` when the item declares one (nothing is read);
- else, for a local file, a BLAKE2b digest of its bytes (a file replaced by other content keeps
  no cached mask, even with the same size and modification time);
- else (a remote file without a checksum) its URL: remote content is not downloaded to be
  hashed, so such a scene is keyed by where it is, as before.

Hashing reads every byte once per stack assembly: about the speed of reading the files (see
``experiments/fingerprint_cost.md`` for the figure on a 100-date stack).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import pystac

from cloudseg.digests import file_digest
from cloudseg.sentinel2.sources import is_remote

CHECKSUM_FIELD = "file:checksum"


def asset_checksums(item: pystac.Item | None) -> dict[str, str]:
    """``href -> file:checksum`` of the item's assets that declare one (absolute hrefs)."""
    if item is None:
        return {}
    return {
        asset.get_absolute_href() or asset.href: str(asset.extra_fields[CHECKSUM_FIELD])
        for asset in item.assets.values()
        if asset.extra_fields.get(CHECKSUM_FIELD)
    }


def layer_key(path: str, checksums: Mapping[str, str]) -> str:
    """What one layer file contributes: its checksum, its bytes' digest, or its URL."""
    if path in checksums:
        return f"checksum:{checksums[path]}"
    if not is_remote(path) and os.path.isfile(path):
        return f"blake2b:{file_digest(path)}"
    return f"url:{path}"


def scene_fingerprint(layers: Mapping[str, str], checksums: Mapping[str, str]) -> str:
    """sha256 over ``layer name -> file`` (see the module docstring); a file holding several
    layers is hashed once."""
    keys: dict[str, str] = {}
    digest = hashlib.sha256()
    for name in sorted(layers):
        path = layers[name]
        if path not in keys:
            keys[path] = layer_key(path, checksums)
        digest.update(f"{name}={keys[path]}\n".encode())
    return digest.hexdigest()
