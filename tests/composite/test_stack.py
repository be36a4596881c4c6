"""Stack assembly: sources (folder, list, STAC file, STAC API), metadata, filters, deduplication
and unreadable scenes skipped with a warning and a count."""

from __future__ import annotations

import datetime as dt
import json
import logging

import numpy as np
import pystac
import pytest

from composite.stack import StackSettings, build_stack
from composite.stack.description import solar_date
from composite.stack.discovery import list_candidates

REAL_ITEM = "l2a-29RKH-20200219/item.json"


def test_folder_stack_is_sorted_with_dates_offsets_and_solar_days(tiny_stack):
    (tiny_stack.folder / "notes.txt").write_text("not a scene")
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    assert [s.scene_id for s in stack.scenes] == [str(d.date()) for d in tiny_stack.dates]
    assert [s.datetime for s in stack.scenes] == tiny_stack.dates
    # baseline 04.00 from 2022-01-25 on: offset -1000, before: 0
    offsets = {s.scene_id: s.offset for s in stack.scenes}
    assert offsets["2021-11-01"] == 0.0 and offsets["2022-03-01"] == -1000.0
    assert all(s.solar_date == s.datetime.date() for s in stack.scenes)  # 10:30 UTC at 3 deg E
    assert {s.tile_id for s in stack.scenes} == {"31TDH"}
    assert stack.skipped == [] and stack.duplicates == [] and stack.filtered == {}
    assert stack.summary()["dates"][0] == "2021-11-01"


def test_unreadable_scenes_are_skipped_with_a_warning_and_counted(tiny_stack, caplog):
    good = tiny_stack.paths[0].read_bytes()
    (tiny_stack.folder / "garbage.tif").write_bytes(b"this is not a tiff")
    (tiny_stack.folder / "truncated.tif").write_bytes(good[:300])  # header cut off
    (tiny_stack.folder / "stack.json").write_text(json.dumps({"not": "a stac item"}))
    with caplog.at_level(logging.WARNING, logger="composite.stack"):
        stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    assert len(stack) == 10
    skipped = {s.source.rsplit("/", 1)[-1] for s in stack.skipped}
    assert skipped == {"garbage.tif", "truncated.tif", "stack.json"}
    assert stack.summary()["skipped"] == 3
    assert "truncated.tif" in caplog.text and "3 of 13 scenes were unreadable" in caplog.text


def test_a_list_of_scenes_and_year_month_filters(tiny_stack):
    sources = [str(p) for p in tiny_stack.paths]
    stack = build_stack(StackSettings(source=sources, years=[2022], months=[1, 2]), progress=False)
    assert [s.scene_id for s in stack.scenes] == ["2022-01-20", "2022-02-09"]
    assert stack.filtered == {"years": 4, "months": 4}
    with pytest.raises(ValueError, match=r"No scenes left.*'years': 10"):
        build_stack(StackSettings(source=sources, years=[2019]), progress=False)


def test_same_overpass_keeps_the_scene_with_least_nodata(tmp_path, scene_writer, grid_of):
    grid = grid_of(32, 32)
    surface = np.full((4, 32, 32), 0.1, dtype=np.float32)
    partial = surface.copy()
    partial[:, :, 20:] = np.nan
    when = dt.datetime(2021, 6, 1, 10, 30, tzinfo=dt.UTC)
    scene_writer(tmp_path / "a_partial.tif", partial, grid, when)
    scene_writer(tmp_path / "b_full.tif", surface, grid, when + dt.timedelta(seconds=20))
    scene_writer(tmp_path / "c_other_sat.tif", surface, grid, when, spacecraft="Sentinel-2B")
    scene_writer(tmp_path / "d_next_day.tif", partial, grid, when + dt.timedelta(days=1))
    stack = build_stack(StackSettings(source=str(tmp_path)), progress=False)
    assert sorted(s.scene_id for s in stack.scenes) == ["b_full", "c_other_sat", "d_next_day"]
    assert stack.duplicates == [("a_partial", "b_full")]
    undeduplicated = build_stack(
        StackSettings(source=str(tmp_path), deduplicate=False), progress=False
    )
    assert len(undeduplicated) == 4


def test_solar_day_follows_longitude_not_utc():
    late_utc = dt.datetime(2021, 6, 1, 22, 30, tzinfo=dt.UTC)
    assert solar_date(late_utc, 30.0) == dt.date(2021, 6, 2)  # 00:30 local solar time
    assert solar_date(late_utc, -30.0) == dt.date(2021, 6, 1)
    early_utc = dt.datetime(2021, 6, 1, 0, 30, tzinfo=dt.UTC)
    assert solar_date(early_utc, -120.0) == dt.date(2021, 5, 31)


def test_static_stac_item_gives_a_one_scene_stack_with_its_metadata(realdata):
    stack = build_stack(StackSettings(source=str(realdata / REAL_ITEM)), progress=False)
    (scene,) = stack.scenes
    assert scene.scene_id == "S2A_29RKH_20200219_0_L2A"
    assert (scene.tile_id, scene.spacecraft, scene.relative_orbit) == ("29RKH", "Sentinel-2A", 37)
    assert scene.cloud_cover == pytest.approx(4.051854)
    assert scene.offset == 0.0 and scene.processing_baseline == "02.14"
    assert "SCL" in scene.bands and "B10" not in scene.bands
    assert scene.grid.shape == (1098, 1098)
    with scene.open() as opened:  # the stored item reopens with absolute hrefs
        assert opened.read(["B04"], window=None, grid=scene.grid.with_resolution(6000)).any()
    with pytest.raises(ValueError, match=r"'cloud_cover': 1"):
        build_stack(
            StackSettings(source=str(realdata / REAL_ITEM), max_cloud_cover=1.0), progress=False
        )


def test_item_collection_file_dedups_reprocessed_items_by_newer_baseline(realdata, tmp_path):
    item = pystac.Item.from_file(str(realdata / REAL_ITEM))
    item.make_asset_hrefs_absolute()
    reprocessed = item.clone()
    reprocessed.id = "S2A_29RKH_20200219_1_L2A"
    reprocessed.properties["s2:processing_baseline"] = "05.00"
    for asset in reprocessed.assets.values():
        for band in asset.extra_fields.get("raster:bands", []):
            band["offset"] = 0  # DN already on the old scale for the test
    collection = pystac.ItemCollection([item, reprocessed])
    path = tmp_path / "items.json"
    path.write_text(json.dumps(collection.to_dict()))
    stack = build_stack(StackSettings(source=str(path)), progress=False)
    assert [s.scene_id for s in stack.scenes] == ["S2A_29RKH_20200219_1_L2A"]
    assert stack.duplicates == [("S2A_29RKH_20200219_0_L2A", "S2A_29RKH_20200219_1_L2A")]


def test_stac_api_search_parameters_and_client_side_filters(realdata, monkeypatch):
    settings = StackSettings(
        source="https://stac.example.com/v1",
        tile="T29RKH",
        years=[2019, 2020, 2021],
        months=[2],
        max_cloud_cover=20,
        max_items=50,
    )
    parameters = settings.stac_search().parameters()
    assert parameters == {
        "collections": ["sentinel-2-l2a"],
        "datetime": "2019-01-01/2021-12-31",
        "query": {"eo:cloud_cover": {"lte": 20}, "grid:code": {"eq": "MGRS-29RKH"}},
        "max_items": 50,
    }
    planetary = StackSettings(source="https://x/api", tile="29RKH", tile_property="s2:mgrs_tile")
    assert planetary.stac_search().parameters()["query"] == {"s2:mgrs_tile": {"eq": "29RKH"}}
    with pytest.raises(ValueError, match="needs a place"):
        StackSettings(source="https://x/api").stac_search().parameters()

    item = pystac.Item.from_file(str(realdata / REAL_ITEM))
    item.make_asset_hrefs_absolute()
    march = item.clone()
    march.id = "march"
    march.datetime = dt.datetime(2020, 3, 19, 11, 34, tzinfo=dt.UTC)
    calls = []

    class FakeSearch:
        def items(self):
            return iter([item, march])

    class FakeClient:
        def search(self, **kwargs):
            calls.append(kwargs)
            return FakeSearch()

    import pystac_client

    opened = []
    monkeypatch.setattr(
        pystac_client.Client,
        "open",
        classmethod(lambda cls, url: opened.append(url) or FakeClient()),
    )
    stack = build_stack(settings, progress=False)
    assert opened == ["https://stac.example.com/v1"] and calls == [parameters]
    assert [s.scene_id for s in stack.scenes] == ["S2A_29RKH_20200219_0_L2A"]
    assert stack.filtered == {"months": 1}


def test_sources_and_settings_errors_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_candidates(StackSettings(source=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match="holds no scenes"):
        list_candidates(StackSettings(source=str(tmp_path)))
    with pytest.raises(ValueError, match="months are 1-12"):
        StackSettings(source="x", months=[0, 13])
    with pytest.raises(ValueError, match="west < east"):
        StackSettings(source="x", bbox=[10, 0, 5, 1])
    with pytest.raises(ValueError, match="stack.source is not set"):
        StackSettings(source="")
    with pytest.raises(ValueError, match="tile_property"):
        StackSettings(source="x", tile_property="mgrs")
