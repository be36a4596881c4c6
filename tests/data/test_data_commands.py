"""The data commands the README shows, end to end: simulate a labeled set, import
s2cloudless labels from a real L1C SAFE."""

from __future__ import annotations

import rasterio

from cloudseg.data.importers.cli import main as import_main
from cloudseg.data.manifest import read_manifest
from cloudseg.data.simulate.cli import main as simulate_main
from cloudseg.sentinel2.bands import L1C_BANDS


def test_simulate_a_labeled_set_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "simulated" / "labeled"
    argv = ["labeled", "--out", str(out), "--n-scenes", "2", "--size", "64", "--no-progress"]
    assert simulate_main(argv) == 0
    manifest = read_manifest(out)
    assert len(manifest) == 2 and set(manifest["bands"]) == {" ".join(L1C_BANDS)}
    assert all((out / path).is_file() for path in [*manifest["image_path"], *manifest["mask_path"]])
    assert f"in {out}" in capsys.readouterr().out


def test_import_s2cloudless_labels_from_an_l1c_safe(l1c_safe, tmp_path):
    out = tmp_path / "mylabels"
    import_main(["s2cloudless", str(l1c_safe), "--out", str(out)])
    (row,) = read_manifest(out).to_dict("records")
    assert (row["site"], row["date"], row["label_source"], row["curation"]) == (
        "31TDH", "2015-07-26", "s2cloudless", "pending",
    )  # fmt: skip
    assert row["bands"].split() == list(L1C_BANDS)
    with rasterio.open(out / row["mask_path"]) as mask:
        assert mask.res == (20.0, 20.0) and mask.shape == (150, 150)  # the default 20 m
