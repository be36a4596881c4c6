"""cloudfree's cloud-mask package (Sentinel-2 I/O, datasets, models, training, inference).

Importing it makes idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE`` unless
set): torch and numba each keep an OpenMP pool, and on a busy CPU one library's spinning threads
starve the other's (15-60x slower steps measured on 2 cores). The variable is read when torch
loads, so every entry point (``train.py``, ``composite.py``, the ``cloudfree-*`` commands) imports
this package before torch.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
