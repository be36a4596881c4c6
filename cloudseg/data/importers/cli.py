"""``cloudfree-import``: one subcommand per kind of label source, all writing one dataset folder.

    cloudfree-import hand IMAGES LABELS --out data/seed --mapping coding.yaml
    cloudfree-import scl S2A_MSIL2A_...SAFE item.json --out data/seed --curation curation.csv
    cloudfree-import s2cloudless S2B_MSIL1C_...SAFE --out data/seed --curation curation.csv
    cloudfree-import ukis S2B_MSIL2A_...SAFE chips/adwp --out data/seed --curation curation.csv
    cloudfree-import ocm S2B_MSIL2A_...SAFE --ocm-weights weights/ --out data/seed
    cloudfree-import eopatch patches/slovenia --site slovenia --out data/seed
    cloudfree-import cloud-s2 ~/datasets/copernicus_bench --out data/cloud_s2
    cloudfree-import catalogue ~/datasets/cloud_mask_catalogue --out data/catalogue
    cloudfree-import curate data/seed --curation curation.csv

Scenes are added to (or replace rows of) ``--out``'s manifest; then assign splits with
``cloudfree-dataset-split`` and look at the result with ``cloudfree-dataset-summary``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from cloudseg.data.importers.curation import CurationList, apply_curation
from cloudseg.data.importers.hand import (
    RASTER_SUFFIXES,
    VECTOR_SUFFIXES,
    ClassMapping,
    import_hand_labels,
    pair_by_stem,
)
from cloudseg.data.importers.producer_labels import import_producer_labels
from cloudseg.data.importers.public import import_cloud_mask_catalogue, import_copernicus_cloud_s2
from cloudseg.data.importers.s2cloudless_labels import (
    S2CloudlessConfig,
    import_reflectance_series,
    import_s2cloudless_product,
    read_eopatch,
)
from cloudseg.data.importers.scl import import_scl_product
from cloudseg.data.manifest import DatasetWriter, ManifestRow


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    return [path]


def _hand(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    mapping = ClassMapping.read(args.mapping) if args.mapping else ClassMapping.identity()
    images, labels = Path(args.images), Path(args.labels)
    if images.is_dir() != labels.is_dir():
        raise ValueError("IMAGES and LABELS must both be files or both be folders.")
    if images.is_dir():
        pairs = pair_by_stem(
            _files(images, RASTER_SUFFIXES), _files(labels, RASTER_SUFFIXES + VECTOR_SUFFIXES)
        )
    else:
        pairs = [(images, labels)]
    return [
        import_hand_labels(
            writer,
            image,
            label,
            mapping,
            band_names=args.band_names,
            attribute=args.attribute,
            layer=args.layer,
            site=args.site,
            date=args.date,
            curation=curation,
        )
        for image, label in tqdm(pairs, desc="hand labels")
    ]


def _scl(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    return [
        import_scl_product(
            writer,
            source,
            bands=args.bands,
            resolution=args.resolution,
            site=args.site,
            curation=curation,
        )
        for source in tqdm(args.sources, desc="SCL scenes")
    ]


def _s2cloudless(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    if (args.cloud_mask or args.probability) and len(args.sources) != 1:
        raise ValueError("--cloud-mask/--probability belong to one scene: give one SOURCE.")
    config = S2CloudlessConfig(threshold=args.threshold)
    return [
        import_s2cloudless_product(
            writer,
            source,
            resolution=args.resolution,
            cloud_mask_path=args.cloud_mask,
            probability_path=args.probability,
            probability_max=args.probability_max,
            config=config,
            site=args.site,
            curation=curation,
        )
        for source in tqdm(args.sources, desc="s2cloudless scenes")
    ]


def _producer(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    from cloudseg.inference.producers import build_producer

    if args.command == "ukis":
        options = {"product_level": args.product_level} if args.product_level else {}
    else:
        options = {"weights": args.ocm_weights}
    producer = build_producer(args.command, **options)
    return [
        import_producer_labels(
            writer,
            source,
            producer,
            bands=args.bands,
            resolution=args.resolution,
            site=args.site,
            curation=curation,
        )
        for source in tqdm(args.sources, desc=f"{args.command} scenes")
    ]


def _eopatch(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    mask_feature = None if args.run_s2cloudless else args.mask_feature
    reflectance, masks, timestamps, grid = read_eopatch(
        args.folder, args.data_feature, mask_feature
    )
    return import_reflectance_series(
        writer,
        reflectance,
        timestamps,
        grid,
        site=args.site,
        cloud_masks=masks,
        config=S2CloudlessConfig(threshold=args.threshold),
        curation=curation,
    )


def _cloud_s2(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    return import_copernicus_cloud_s2(
        writer,
        args.root,
        splits=tuple(args.splits),
        keep_published_split=args.keep_published_split,
        processing_baseline=args.processing_baseline,
        curation=curation,
    )


def _catalogue(args, writer: DatasetWriter, curation: CurationList | None) -> list[ManifestRow]:
    return import_cloud_mask_catalogue(writer, args.root, curation=curation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudfree-import",
        description="Import labeled cloud masks into a dataset folder (see data/README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--out", required=True, help="dataset folder to write into")
        sub.add_argument("--curation", help="curation list CSV (scene_id,decision,reason)")
        return sub

    hand = command("hand", _hand, "Hand labels: label rasters or polygons on GeoTIFF images.")
    hand.add_argument("images", help="image GeoTIFF, or a folder of them")
    hand.add_argument("labels", help="label raster/polygon file, or a folder (paired by name)")
    hand.add_argument("--mapping", help="class mapping YAML/JSON (default: already 0-3/255)")
    hand.add_argument("--attribute", default="class", help="polygon attribute holding the class")
    hand.add_argument("--layer", help="layer of a GeoPackage")
    hand.add_argument("--band-names", nargs="+", help="image band names in file order")
    hand.add_argument("--site", default="", help="site id (default: the tile id)")
    hand.add_argument("--date", default="", help="acquisition date (default: from tags/name)")

    scl = command("scl", _scl, "Labels from L2A scene classification (SCL).")
    scl.add_argument("sources", nargs="+", help="L2A SAFE, band folder or STAC item JSON")
    scl.add_argument("--bands", nargs="+", default="L2A", help="bands to store (default L2A)")
    scl.add_argument("--resolution", type=float, default=20.0, help="metres (default 20)")
    scl.add_argument("--site", default="", help="site id (default: the tile id)")

    s2c = command("s2cloudless", _s2cloudless, "Labels from s2cloudless on L1C scenes.")
    s2c.add_argument("sources", nargs="+", help="L1C SAFE, band folder, GeoTIFF or STAC item")
    s2c.add_argument("--resolution", type=float, default=20.0, help="metres (default 20)")
    given = s2c.add_mutually_exclusive_group()
    given.add_argument("--cloud-mask", help="existing s2cloudless mask raster (0/1)")
    given.add_argument("--probability", help="existing cloud probability raster")
    s2c.add_argument("--probability-max", type=float, default=1.0, help="100 or 255 if scaled")
    s2c.add_argument("--threshold", type=float, default=S2CloudlessConfig.threshold)
    s2c.add_argument("--site", default="", help="site id (default: the tile id)")

    for name, help_text in (
        ("ukis", "Labels from ukis-csmask (real-trained, offline) run on the scenes."),
        ("ocm", "Labels from OmniCloudMask run on the scenes (needs --ocm-weights)."),
    ):
        detector = command(name, _producer, help_text)
        detector.add_argument("sources", nargs="+", help="SAFE, band folder, GeoTIFF or STAC item")
        detector.add_argument("--bands", nargs="+", default=None, help="bands to store (all)")
        detector.add_argument("--resolution", type=float, default=20.0, help="metres (20)")
        detector.add_argument("--site", default="", help="site id (default: the tile id)")
        if name == "ukis":
            detector.add_argument(
                "--product-level", choices=("auto", "l1c", "l2a"),
                help="its L1C or L2A model (default auto: from the scene)",
            )  # fmt: skip
        else:
            detector.add_argument(
                "--ocm-weights", required=True,
                help="folder of OmniCloudMask weight files, a TorchScript .pt, or 'download'",
            )  # fmt: skip

    eop = command("eopatch", _eopatch, "An eo-learn EOPatch time series (s2cloudless labels).")
    eop.add_argument("folder", help="EOPatch folder (data/, mask/, bbox.geojson, timestamps.json)")
    eop.add_argument("--site", required=True, help="site id for every date of the patch")
    eop.add_argument("--data-feature", default="BANDS", help="13-band L1C reflectance feature")
    eop.add_argument("--mask-feature", default="CLM", help="s2cloudless mask feature")
    eop.add_argument("--run-s2cloudless", action="store_true", help="ignore masks, run s2cloudless")
    eop.add_argument("--threshold", type=float, default=S2CloudlessConfig.threshold)

    cs2 = command("cloud-s2", _cloud_s2, "Copernicus-Bench cloud_s2 (CloudSEN12+ subset).")
    cs2.add_argument("root", help="folder holding cloud_s2/ (torchgeo's root)")
    cs2.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    cs2.add_argument("--keep-published-split", action="store_true")
    cs2.add_argument(
        "--processing-baseline", default="", help="baseline of the DN (default: offset 0)"
    )

    cat = command("catalogue", _catalogue, "Sentinel-2 Cloud Mask Catalogue (Francis et al.).")
    cat.add_argument("root", help="folder holding subscenes/ and masks/")

    curate = commands.add_parser("curate", help="Apply a curation list to an existing dataset.")
    curate.add_argument("dataset", help="dataset folder")
    curate.add_argument("--curation", required=True, help="curation list CSV")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "curate":
        curation = CurationList.read(args.curation)
        frame = apply_curation(args.dataset, curation)
        print(frame["curation"].value_counts().to_string())
        return
    curation = CurationList.read(args.curation) if args.curation else None
    with DatasetWriter(args.out) as writer:
        rows = args.handler(args, writer, curation)
    print(f"Wrote {len(rows)} scenes to {args.out}: {dict(Counter(r.curation for r in rows))}")
    for row in rows:
        if row.curation == "rejected":
            print(f"  rejected {row.scene_id}: {row.curation_reason}")
    if curation is not None and curation.unused():
        print(f"Curation list entries matching no imported scene: {curation.unused()}")


if __name__ == "__main__":
    main()
