"""The default training data (``make demo-data``): the mix that won the real-scene ablation
(``experiments/real_training/``), prepared idempotently under one folder; the parts
:data:`DEMO_RECIPE` switches off are not built::

    <out>/library.npz       spectral library of real clear-sky pixels (from --realdata)
    <out>/simulated/        simulated labeled scenes (DEMO_RECIPE: library surfaces, GSDs)
    <out>/backgrounds/      simulated clouds on real clear backgrounds (from --realdata)
    <out>/curated/          real scenes labeled by the detectors' consensus (from --realdata,
                            accepted by the curation list)
    <out>/mix/              the training dataset: a manifest over the folders above

Each step is skipped when its output is complete (the file it writes last exists), so a rerun
only does what is missing. Without a real-scene folder the demo falls back to the simulated
scenes with built-in spectra and says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloudseg.data.importers.curation import CurationList
from cloudseg.data.manifest import MANIFEST_NAME
from cloudseg.data.mix import write_mixed_dataset
from cloudseg.data.realdata.backgrounds import write_background_set
from cloudseg.data.realdata.build_library import build_library
from cloudseg.data.realdata.curated import write_curated_set
from cloudseg.data.realdata.scenes import find_real_scenes
from cloudseg.data.simulate.library import SpectralLibrary
from cloudseg.data.simulate.products import write_labeled_set

#: What the default training data is made of: the ablation's best 6-band arm, `+backgrounds`
#: (experiments/real_training/ablation.md): simulated scenes with the built-in spectra at 10 m and
#: simulated clouds on real clear backgrounds. The other levers stay switchable here: on the real
#: yardstick they did not pay in 6-band runs (library: fewer false alarms but lower IoU; GSD mix
#: and curated labels: more false alarms).
DEMO_RECIPE = {
    "library": False,  # simulated surfaces from the real spectral library
    "gsds": (10,),  # simulated scenes cycled over these GSDs (e.g. (10, 20, 30, 60))
    "backgrounds": True,  # simulated clouds on real clear backgrounds
    "curated": False,  # real scenes labeled by the detectors' consensus, curated
    "n_scenes": 100,
    "size": 512,
    "renders": 6,
}


CURATION_LIST = Path("data/manifests/realdata_consensus_curation.csv")


def prepare_demo_data(
    out: str | os.PathLike,
    realdata: str | os.PathLike | None,
    seed: int = 0,
    curation: str | os.PathLike | None = CURATION_LIST,
) -> Path:
    """Prepare the default training mix under ``out`` (see the module doc); return the mix.

    ``curation`` accepts or rejects the consensus-labeled real scenes (scenes it does not name
    are listed as pending and not trained on)."""
    out = Path(out)
    real = Path(realdata) if realdata is not None and Path(realdata).is_dir() else None
    if real is None:
        print(
            f"demo-data: no real scenes at {realdata}; training data is simulated only (set "
            "REALDATA=<folder of Sentinel-2 scenes> for the real spectral library and backgrounds)."
        )
    scenes = find_real_scenes(real) if real is not None else []
    library = None
    if real is not None and DEMO_RECIPE["library"]:
        path = out / "library.npz"
        if not path.exists():
            print("== demo-data 1/5: spectral library of real clear-sky pixels")
            build_library(scenes, seed=seed).save(path)
        library = SpectralLibrary.load(path)
    sources = [out / "simulated"]
    if not (out / "simulated" / MANIFEST_NAME).exists():
        print("== demo-data 2/5: simulated labeled scenes")
        write_labeled_set(
            out / "simulated", DEMO_RECIPE["n_scenes"], DEMO_RECIPE["size"], seed,
            library=library, gsds=DEMO_RECIPE["gsds"],
        )  # fmt: skip
    if real is not None and DEMO_RECIPE["backgrounds"]:
        sources.append(out / "backgrounds")
        if not (out / "backgrounds" / MANIFEST_NAME).exists():
            print("== demo-data 3/5: simulated clouds on real clear backgrounds")
            write_background_set(scenes, out / "backgrounds", DEMO_RECIPE["renders"], seed)
    if real is not None and DEMO_RECIPE["curated"]:
        sources.append(out / "curated")
        if not (out / "curated" / MANIFEST_NAME).exists():
            print("== demo-data 4/5: real scenes labeled by the detectors' consensus")
            decisions = CurationList.read(curation) if curation is not None else None
            write_curated_set(scenes, out / "curated", decisions)
    print("== demo-data 5/5: training mix")
    return write_mixed_dataset(out / "mix", sources)
