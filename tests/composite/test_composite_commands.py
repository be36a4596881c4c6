"""The composite commands the README shows, end to end: a folder of scenes with a checkpoint, a
fully masked stack, a STAC API search (the client serves the real item), Dask clusters."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio

from cloudseg.data.simulate.products import write_stack
from composite.run import run_composite, settings_from_config
from helpers.composite import REAL_ITEM, compose_composite

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """A folder of 4 simulated L1C scenes, 64 x 64 px (with stack.json and truth/)."""
    folder = tmp_path_factory.mktemp("scenes")
    write_stack(folder, n_dates=4, size=64, seed=0, progress=False)
    return folder


@pytest.fixture
def stac_api(monkeypatch):
    """``serve(items)``: pystac_client searches answer ``items``; returns the URLs opened and
    the search arguments, appended as the composite asks."""
    calls = {"opened": [], "searches": []}

    class Search:
        def __init__(self, items):
            self._items = items

        def items(self):
            return iter(self._items)

    def serve(items: list[pystac.Item]) -> dict[str, list]:
        class Client:
            def search(self, **kwargs):
                calls["searches"].append(kwargs)
                return Search(items)

        def open_client(cls, url):
            calls["opened"].append(url)
            return Client()

        monkeypatch.setattr(pystac_client.Client, "open", classmethod(open_client))
        return calls

    return serve


def test_composite_a_folder_of_scenes_with_a_checkpoint(checkpoint, scenes, tmp_path):
    overrides = [f"ckpt={checkpoint}", f"stack.source={scenes}/"]
    overrides += ["masks.inference.device=cpu", "masks.inference.resolution=20"]  # as the demo
    overrides += [
        "masks.inference.rule.clear_threshold=null"
    ]  # untrained: p(clear) < 0.9 everywhere
    result = run_composite(compose_composite(overrides, tmp_path))
    record = result.record
    assert len(record["stack"]["dates"]) == 4
    assert (record["masks"]["source"], record["masks"]["computed"]) == ("model", 4)
    out = tmp_path / "out"
    for name in ("composite.tif", "count.tif", "run.json", "composite_rgb.png",
                 "composite_gray.png", "map.html", "metrics.json", "metrics.md"):  # fmt: skip
        assert (out / name).is_file(), name
    table = json.loads((out / "metrics.json").read_text())
    # the default baselines that apply to L1C scenes (no SCL here), and the simulated truth
    assert {"composite", "baseline_none", "baseline_s2cloudless"} <= set(table)
    assert {"residual_cloud", "model_residual_cloud"} <= set(table["composite"])


def test_composite_whose_every_observation_is_masked_says_so_instead_of_failing(
    checkpoint, scenes, tmp_path, caplog
):
    """The untrained checkpoint's p(clear) stays below the default clear_threshold (0.9): every
    observation is masked, the composite is all nodata, and the metrics say why they are empty."""
    overrides = [f"ckpt={checkpoint}", f"stack.source={scenes}/", "masks.inference.device=cpu"]
    overrides += ["masks.inference.resolution=20", "evaluation.baselines=[]"]
    run_composite(compose_composite(overrides, tmp_path))
    table = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert table["composite"] == {
        "share_clear_obs_0": 1.0, "share_clear_obs_1_2": 0.0, "share_clear_obs_3plus": 0.0
    }  # fmt: skip
    assert "has no valid pixel: every observation was masked" in caplog.text


def test_composite_a_stac_api_search_by_tile_years_and_months(
    checkpoint, realdata, stac_api, tmp_path
):
    february = pystac.Item.from_file(str(realdata / REAL_ITEM))
    february.make_asset_hrefs_absolute()
    july = february.clone()
    july.id = "S2A_29RKH_20200719_0_L2A"
    july.datetime = dt.datetime(2020, 7, 19, 11, 34, tzinfo=dt.UTC)
    calls = stac_api([february, july])
    readme = [
        f"ckpt={checkpoint}", f"stack.source={EARTH_SEARCH}", "stack.tile=29RKH",
        "stack.years=[2019,2020,2021,2022,2023]", "stack.months=[6,7,8]",
        "stack.max_cloud_cover=60",
    ]  # fmt: skip
    small = [
        "masks.inference.resolution=600", "masks.inference.window_size=64",
        "masks.inference.device=cpu", "composite.bands=[B04,B08]", "composite.resolution=600",
        "evaluation.baselines=[none]",
    ]  # fmt: skip
    record = run_composite(compose_composite(readme + small, tmp_path)).record
    assert calls["opened"] == [EARTH_SEARCH]
    (search,) = calls["searches"]
    assert search["collections"] == ["sentinel-2-l2a"]
    assert search["datetime"] == "2019-01-01/2023-12-31"
    assert search["query"] == {"eo:cloud_cover": {"lte": 60}, "grid:code": {"eq": "MGRS-29RKH"}}
    assert record["stack"]["dates"] == ["2020-07-19"]  # February is not in [6, 7, 8]
    assert record["stack"]["filtered"] == {"months": 1}
    assert (record["masks"]["source"], record["masks"]["computed"]) == ("model", 1)
    assert (tmp_path / "out" / "composite.tif").is_file()


def read_raster(path: Path) -> np.ndarray:
    """Every band of a raster file."""
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_composite_on_dask_clusters_matches_the_local_run(scenes, tmp_path):
    """`cluster=address` to a scheduler started here (standing in for tcp://scheduler:8786) and
    `cluster=localcluster` give the local run's composite, count and provenance. The
    LocalCluster runs its workers as threads here: on worker processes this run took 17 s, most
    of it starting and stopping them (tests/composite/test_driver.py runs them, marked slow)."""
    from distributed import LocalCluster

    common = [f"stack.source={scenes}", "masks.source=none", "composite.window_size=32",
              "composite.method=nearest", "evaluation.baselines=[]"]  # fmt: skip

    def run(name: str, *cluster: str) -> dict:
        overrides = [*common, *cluster, f"out_dir={tmp_path / name}"]
        return run_composite(compose_composite(overrides, tmp_path)).record

    local = run("local")
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as scheduler:
        address = run(
            "address", "cluster=address", f"cluster.address={scheduler.scheduler_address}"
        )
    localcluster = run("localcluster", "cluster=localcluster", "cluster.processes=false")
    records = (local, address, localcluster)
    assert [r["cluster"]["mode"] for r in records] == ["local", "address", "localcluster"]
    assert localcluster["cluster"]["workers"] == 2
    for record in records:  # each computed every window itself
        assert record["windows"]["computed"] == record["windows"]["total"] == 4
    for name in ("composite.tif", "count.tif", "provenance.tif"):
        expected = read_raster(tmp_path / "local" / name)
        np.testing.assert_array_equal(read_raster(tmp_path / "address" / name), expected, name)
        np.testing.assert_array_equal(read_raster(tmp_path / "localcluster" / name), expected, name)


def test_dask_cluster_options_compose(tmp_path):
    readme = ["cluster=address", "cluster.address=tcp://scheduler:8786"]
    cfg = compose_composite(["stack.source=x", "masks.source=none", *readme], tmp_path)
    cluster = settings_from_config(cfg).cluster
    assert (cluster.mode, cluster.address) == ("address", "tcp://scheduler:8786")
