"""An interactive map page of a composite that opens with no internet.

One self-contained HTML file: Leaflet's JS and CSS (vendored in ``composite/assets/leaflet``) and the
layer pictures (PNG data URIs) are inlined, so the page works from a USB stick or an air-gapped
machine. There is no basemap (that would need tiles from the internet); a lon/lat graticule, a scale
bar and the cursor position give the geographic frame, and a layer switcher compares the composite
with its baselines, valid counts or provenance.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rasterio.warp import transform_bounds

from cloudseg.sentinel2.bands import RGB_BANDS
from cloudseg.sentinel2.cog import atomic_path
from composite.quicklook import (
    DEFAULT_STRETCH,
    count_rgba,
    png_bytes,
    read_band_values_preview,
    read_bands_preview,
    rgba_image,
)

ASSETS = Path(__file__).parent / "assets" / "leaflet"


@dataclass(frozen=True)
class MapLayer:
    """One picture on the map: PNG bytes covering ``bounds`` (west, south, east, north) in degrees."""

    name: str
    png: bytes
    visible: bool = False
    opacity: float = 1.0


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _leaflet_css() -> str:
    """Leaflet's CSS with the images it references inlined as data URIs."""
    css = (ASSETS / "leaflet.css").read_text(encoding="utf-8")
    return re.sub(
        r"url\(images/([\w.-]+)\)",
        lambda match: f"url({_data_uri((ASSETS / 'images' / match[1]).read_bytes())})",
        css,
    )


def _graticule_step(west: float, south: float, east: float, north: float) -> float:
    span = max(east - west, north - south)
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0):
        if span / step <= 8:
            return step
    return 10.0


def render_map_page(
    layers: Sequence[MapLayer],
    bounds: tuple[float, float, float, float],
    *,
    title: str,
    info: Mapping[str, object] | None = None,
) -> str:
    """The page's HTML for ``layers`` over ``bounds`` = (west, south, east, north) in degrees."""
    if not layers:
        raise ValueError("A map page needs at least one layer.")
    west, south, east, north = bounds
    if not (west < east and south < north):
        raise ValueError(
            f"Map bounds must be (west, south, east, north) with west<east, south<north; got {bounds}."
        )
    if not any(layer.visible for layer in layers):
        layers = [MapLayer(layers[0].name, layers[0].png, True, layers[0].opacity), *layers[1:]]
    spec = {
        "bounds": [[south, west], [north, east]],
        "step": _graticule_step(west, south, east, north),
        "layers": [
            {
                "name": layer.name,
                "url": _data_uri(layer.png),
                "visible": layer.visible,
                "opacity": layer.opacity,
            }
            for layer in layers
        ],
    }
    info_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (info or {}).items()
    )
    return _PAGE.format(
        title=html.escape(title),
        leaflet_css=_leaflet_css(),
        leaflet_js=(ASSETS / "leaflet.js").read_text(encoding="utf-8"),
        spec=json.dumps(spec),
        info_rows=info_rows,
    )


def write_map_page(
    path: str | os.PathLike,
    layers: Sequence[MapLayer],
    bounds: tuple[float, float, float, float],
    *,
    title: str = "cloudfree composite",
    info: Mapping[str, object] | None = None,
) -> Path:
    """Write the self-contained map page to ``path`` (atomically) and return the path."""
    page = render_map_page(layers, bounds, title=title, info=info)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{leaflet_css}</style>
<style>
  html, body {{ margin: 0; height: 100%; font: 13px/1.4 system-ui, sans-serif; }}
  #map {{ position: absolute; inset: 0; background: #20262e; }}
  .panel {{ background: rgba(255,255,255,.92); padding: 6px 10px; border-radius: 4px; }}
  .panel table {{ border-collapse: collapse; }}
  .panel th {{ text-align: left; padding-right: 8px; font-weight: 600; }}
  .graticule-label {{ color: #cfd8e3; font-size: 11px; white-space: nowrap; }}
</style>
</head>
<body>
<div id="map"></div>
<div id="info" class="panel"><b>{title}</b><table>{info_rows}</table><div id="cursor">move the cursor over the map</div></div>
<script>{leaflet_js}</script>
<script>
(function () {{
  var spec = {spec};
  var map = L.map("map", {{ attributionControl: false, zoomSnap: 0.25 }});
  var overlays = {{}};
  spec.layers.forEach(function (layer) {{
    var overlay = L.imageOverlay(layer.url, spec.bounds, {{ opacity: layer.opacity, className: "composite-layer" }});
    overlays[layer.name] = overlay;
    if (layer.visible) overlay.addTo(map);
  }});
  L.control.layers(null, overlays, {{ collapsed: false }}).addTo(map);
  L.control.scale({{ imperial: false }}).addTo(map);
  map.fitBounds(spec.bounds);

  var s = spec.bounds[0][0], w = spec.bounds[0][1], n = spec.bounds[1][0], e = spec.bounds[1][1];
  var step = spec.step, pad = 2 * step;
  var grid = L.layerGroup().addTo(map);
  for (var lat = Math.ceil((s - pad) / step) * step; lat <= n + pad; lat += step) {{
    L.polyline([[lat, w - pad], [lat, e + pad]], {{ color: "#8aa0b8", weight: 0.6, opacity: 0.6, interactive: false }}).addTo(grid);
  }}
  for (var lon = Math.ceil((w - pad) / step) * step; lon <= e + pad; lon += step) {{
    L.polyline([[s - pad, lon], [n + pad, lon]], {{ color: "#8aa0b8", weight: 0.6, opacity: 0.6, interactive: false }}).addTo(grid);
  }}
  L.rectangle(spec.bounds, {{ color: "#ffcc00", weight: 1, fill: false, interactive: false }}).addTo(map);

  var Info = L.Control.extend({{
    onAdd: function () {{ return document.getElementById("info"); }}
  }});
  new Info({{ position: "bottomleft" }}).addTo(map);
  map.on("mousemove", function (ev) {{
    document.getElementById("cursor").textContent =
      "lat " + ev.latlng.lat.toFixed(5) + ", lon " + ev.latlng.lng.toFixed(5);
  }});
  document.body.setAttribute("data-map-ready", "true");
}})();
</script>
</body>
</html>
"""


def map_layers_from_cog(
    path: str | os.PathLike,
    *,
    name: str,
    bands: Sequence[str] = RGB_BANDS,
    max_size: int = 1024,
    stretch: tuple[float, float] = DEFAULT_STRETCH,
    visible: bool = False,
) -> tuple[MapLayer, tuple[float, float, float, float]]:
    """A map layer from a reflectance COG, warped to Web Mercator so it sits exactly on the map.

    Returns the layer and its (west, south, east, north) bounds in degrees.
    """
    reflectance, (left, bottom, right, top) = read_bands_preview(
        path, bands, max_size, crs="EPSG:3857"
    )
    picture = reflectance if len(bands) == 3 else reflectance.mean(axis=0)
    west, south, east, north = transform_bounds("EPSG:3857", "EPSG:4326", left, bottom, right, top)
    return MapLayer(name, png_bytes(rgba_image(picture, stretch)), visible), (
        west,
        south,
        east,
        north,
    )


def count_map_layer(
    path: str | os.PathLike,
    *,
    name: str,
    max_count: int,
    max_size: int = 1024,
    visible: bool = False,
) -> tuple[MapLayer, tuple[float, float, float, float]]:
    """A map layer of a valid-observation count raster (``count.tif``), warped to Web Mercator by
    nearest neighbour: a colour ramp from 1 to ``max_count``, 0 flagged (see
    :func:`composite.quicklook.count_rgba`). Returns the layer and its bounds in degrees."""
    count, (left, bottom, right, top) = read_band_values_preview(path, 1, max_size, crs="EPSG:3857")
    bounds = transform_bounds("EPSG:3857", "EPSG:4326", left, bottom, right, top)
    return MapLayer(name, png_bytes(count_rgba(count, max_count)), visible), bounds
