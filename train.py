"""Train the cloud-mask segmenter: ``python train.py experiment=demo`` (see conf/README.md).

Fits, tests the best checkpoint, writes ``metrics.json`` in the run directory and returns the
best validation value of ``monitor.metric`` (for ``-m`` multiruns and sweeps).
"""

from __future__ import annotations

import os

# Idle OpenMP threads (torch's, numba's) sleep instead of spinning; read when torch loads. Spinning
# threads of one library starve the other's on a busy CPU (15-60x slower steps measured on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from cloudseg.training import train  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
