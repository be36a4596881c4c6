"""Build a cloud-free composite: ``python composite.py ckpt=best.ckpt stack.source=...``.

Assembles the stack, masks every scene with the checkpoint (or SCL / s2cloudless / none), takes
the masked per-pixel percentile window by window and writes ``composite.tif``, ``count.tif``,
``provenance.tif`` and ``run.json`` (see conf/composite.yaml and composite/run.py).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cloudseg.command_line import exit_on_unparsable_override


@hydra.main(version_base="1.3", config_path="conf", config_name="composite")
def main(cfg: DictConfig) -> None:
    from composite.run import run_composite  # after the override check: it loads torch

    run_composite(cfg)


if __name__ == "__main__":
    exit_on_unparsable_override()  # Hydra's own message never says to quote a value
    from composite.config import register_configs

    register_configs()  # the schema conf/composite.yaml starts from (composite/config.py)
    main()
