"""OmniCloudMask (Wright et al. 2025; MIT) as a pure function, with its weights found or downloaded.

OmniCloudMask segments Red, Green and NIR (Sentinel-2 **B04, B03, B8A**: its own ``load_s2``
default) at 10-50 m into clear / thick cloud / thin cloud / cloud shadow: the CloudSEN12 scheme,
so its codes are the project's (:mod:`cloudseg.labels`) unchanged. It normalises every patch
itself, so reflectance goes in as it is (0 = nodata).

Its weights are not in the package. ``weights`` says where they come from:

- a folder holding the official files of one model version (``model_download_links.csv`` of the
  package: the latest version's two ``.safetensors`` files), loaded as the package loads them;
- a TorchScript file (``.pt``, ``torch.jit.save``) of a custom or fine-tuned model taking
  ``(N, 3, H, W)`` and returning 4 class logits, passed to it as ``custom_models`` (TorchScript
  rather than a pickled module: loading it runs no pickled code);
- ``"download"``: the package's own download (Hugging Face ``NickWright/OmniCloudMask``) into its
  data folder, for machines with internet.

Without ``weights`` it stops and names the option to set (:data:`WEIGHTS_OPTION`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX

#: The Sentinel-2 bands OmniCloudMask takes, in its input order (red, green, NIR).
OCM_BANDS: tuple[str, ...] = ("B04", "B03", "B8A")
#: Where users give the weights: the ``ocm`` producer's ``weights`` option.
WEIGHTS_OPTION = (
    "the ocm producer's weights (composite.py masks.producer_options.ocm.weights=...; "
    "cloudfree-evaluate-masks / cloudfree-import ocm --ocm-weights ...)"
)
DOWNLOAD = "download"
#: The input size below which OmniCloudMask refuses an image (its HARD_MINIMUM_PATCH_SIZE).
MINIMUM_SIZE = 32
CLASS_NODATA = IGNORE_INDEX


class OCMWeightsError(ValueError):
    """OmniCloudMask's weights were not given or are not where they were said to be."""


@dataclass(frozen=True)
class OCMModelFile:
    """One official model file of the package's index."""

    file_name: str
    timm_model_name: str
    model_library: str
    version: float


def official_model_files(version: float | None = None) -> list[OCMModelFile]:
    """The files of ``version`` (default: the latest) listed in the package's own index."""
    index = resources.files("omnicloudmask") / "model_download_links.csv"
    with index.open() as handle:
        rows = [
            OCMModelFile(
                row["file_name"],
                row["timm_model_name"],
                row["model_library"],
                float(row["version"]),
            )
            for row in csv.DictReader(handle)
        ]
    wanted = max(row.version for row in rows) if version is None else float(version)
    return [row for row in rows if row.version == wanted]


def weights_help() -> str:
    names = ", ".join(model.file_name for model in official_model_files())
    return (
        f"Set {WEIGHTS_OPTION} to a folder holding the OmniCloudMask weight files ({names}; from "
        "https://huggingface.co/NickWright/OmniCloudMask), to a TorchScript model file (.pt), "
        f"or to '{DOWNLOAD}' on a machine with internet to fetch them."
    )


def load_models(weights: str | os.PathLike | None, device: str = "cpu") -> list:
    """The torch models OmniCloudMask will run, from ``weights`` (see the module docstring)."""
    import torch
    from omnicloudmask.download_models import get_models
    from omnicloudmask.model_utils import load_model_from_weights

    if weights is None or str(weights).strip() == "":
        raise OCMWeightsError(f"OmniCloudMask needs its weights. {weights_help()}")
    if str(weights) == DOWNLOAD:
        details = get_models(source="hugging_face")  # the package's own download and cache
        files = [(Path(d["Path"]), d["timm_model_name"], d["model_library"]) for d in details]
    else:
        path = Path(weights)
        if path.is_file():
            try:
                return [torch.jit.load(str(path), map_location=device).eval()]
            except RuntimeError as err:
                raise OCMWeightsError(
                    f"ocm weights {path} is not a TorchScript model file ({err}). {weights_help()}"
                ) from err
        if not path.is_dir():
            raise OCMWeightsError(f"ocm weights {path} does not exist. {weights_help()}")
        expected = official_model_files()
        absent = [m.file_name for m in expected if not (path / m.file_name).is_file()]
        if absent:
            raise OCMWeightsError(f"ocm weights {path} lacks {absent}. {weights_help()}")
        files = [(path / m.file_name, m.timm_model_name, m.model_library) for m in expected]
    return [
        load_model_from_weights(
            model_name=name,
            weights_path=file,
            model_library=library,
            device=torch.device(device),
        )
        for file, name, library in files
    ]


def classify(reflectance: np.ndarray, models: list, *, patch_size: int = 1000) -> np.ndarray:
    """Project class codes for ``(3, H, W)`` red, green, NIR reflectance (NaN nodata).

    Images smaller than OmniCloudMask's minimum (32 px) are padded with nodata and cropped back.
    """
    from omnicloudmask import predict_from_array

    if reflectance.ndim != 3 or reflectance.shape[0] != len(OCM_BANDS):
        raise ValueError(
            f"OmniCloudMask input has shape {reflectance.shape}; expected (3, H, W) "
            f"of {list(OCM_BANDS)}."
        )
    nodata = ~np.isfinite(reflectance).all(axis=0)
    height, width = nodata.shape
    padded_h, padded_w = max(height, MINIMUM_SIZE), max(width, MINIMUM_SIZE)
    image = np.zeros((3, padded_h, padded_w), dtype=np.float32)
    image[:, :height, :width] = np.nan_to_num(reflectance, nan=0.0)
    size = min(patch_size, padded_h, padded_w)
    prediction = predict_from_array(
        image,
        patch_size=size,
        patch_overlap=size // 4,
        inference_device="cpu",
        custom_models=models,
        no_data_value=0,
    )[0, :height, :width]
    classes = prediction.astype(np.uint8)
    classes[(prediction >= len(CLASS_NAMES)) | nodata] = CLASS_NODATA
    return classes
