"""Shared fixtures: W&B offline for every test, and the real Sentinel-2 samples in
../shared/realdata (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cloudseg  # noqa: F401  (sets OMP_WAIT_POLICY before a test module loads torch)

os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

REALDATA = Path(
    os.environ.get(
        "CLOUDFREE_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"
    )
)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Folder of the real samples; tests using it skip with the reason when it is not there."""
    if not REALDATA.is_dir():
        pytest.skip(f"real Sentinel-2 samples not found at {REALDATA} (set CLOUDFREE_REALDATA)")
    return REALDATA


@pytest.fixture(autouse=True)
def wandb_offline(monkeypatch):
    """Each test starts with W&B offline: ``wandb.init`` rewrites ``WANDB_MODE`` (to ``dryrun``)
    in the process, which would otherwise leak from one test into the next."""
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def load_experiment():
    """Import a script of ``experiments/`` (not a package) as a module, by file stem."""
    import importlib.util
    import sys

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses in the script look their module up here
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Empty weight caches and Hugging Face offline mode: any download attempt must fail fast."""
    import huggingface_hub.constants as hf_constants

    hf_cache = tmp_path / "hf_cache"
    hf_cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


@pytest.fixture
def ocm_tiny_weights(tmp_path) -> Path:
    """A TorchScript stand-in for OmniCloudMask's weights (no real ones offline): logits say
    thick_cloud where the patch-normalised red channel is above its mean, else clear."""
    import torch

    class RedIsCloud(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            red = x[:, :1]
            return torch.cat([-red, red, red * 0 - 10, red * 0 - 10], dim=1)

    path = tmp_path / "ocm_tiny.pt"
    torch.jit.save(torch.jit.script(RedIsCloud()), str(path))
    return path


@pytest.fixture(scope="session")
def kill_when():
    """``kill_when(process, ready, what)``: SIGKILL a running subprocess as soon as ``ready()``
    holds; fails if the process ends first or ``what`` (the awaited event) takes over 240 s."""
    import signal
    import time

    def kill(process, ready, what: str, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        try:
            while not ready():
                assert process.poll() is None, f"the run ended before {what}"
                assert time.monotonic() < deadline, f"{what}: not in {timeout_s:g} s"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()

    return kill


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Four tiny 13-band scenes on four sites: two train, one val, one test."""
    from helpers.training import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_labeled"))


L1C_SAFE = "S2A_MSIL1C_20150726T105026_N0204_R051_T31TDH_20150726T105026.SAFE"


L1C_GRANULE = "L1C_T31TDH_A000734_20150726T105026"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny-ViT checkpoint (random weights) on B02, B03, B04, B08, B11, as training writes it."""
    from helpers.composite import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.ckpt")


@pytest.fixture
def l1c_safe(realdata, tmp_path) -> Path:
    """The real L1C clip as a SAFE: its JP2 band files linked into GRANULE/<id>/IMG_DATA."""
    safe = tmp_path / L1C_SAFE
    image_data = safe / "GRANULE" / L1C_GRANULE / "IMG_DATA"
    image_data.mkdir(parents=True)
    for band_file in (realdata / "l1c-T31TDH-20150726").glob("*.jp2"):
        (image_data / band_file.name).symlink_to(band_file)
    return safe
