"""Train the cloud-mask segmenter: ``python train.py experiment=demo`` (see conf/README.md).

Fits, tests the best checkpoint, writes ``metrics.json`` in the run directory and returns the
best validation value of ``monitor.metric`` (for ``-m`` multiruns and sweeps).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cloudseg.command_line import exit_on_unparsable_override


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from cloudseg.training import train  # after the override check: it loads torch

    return train(cfg)


if __name__ == "__main__":
    exit_on_unparsable_override()  # Hydra's own message never says to quote a value
    main()
