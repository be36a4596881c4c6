"""The evidence's names, tables and captions: rows of the metrics table, the headline metrics,
the markdown table and the map page's info panel."""

from __future__ import annotations

from collections.abc import Mapping

from composite.pipeline import CompositeResult

MAIN = "composite"
REFERENCE = "reference"
METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
MAP_PAGE = "map.html"
#: Metrics logged as W&B scalars (``<composite>/<metric>``) and shown on the map page.
HEADLINE_METRICS: tuple[str, ...] = (
    "share_clear_obs_0",
    "share_clear_obs_3plus",
    "residual_cloud",
    "residual_shadow",
    "brighter_than_reference",
    "darker_than_reference",
    "model_residual_cloud",
    "model_residual_shadow",
    "mae_mean",
    "ssim_mean",
    "seam_mae",
    "seam_p99_abs",
)


def layer_name(name: str, composite: CompositeResult) -> str:
    """The map's name for a composite of the table."""
    if name == REFERENCE:
        return "reference: truth surfaces, no masks"
    label = "composite" if name == MAIN else "baseline"
    return f"{label}: {composite.masks.source} masks"


def headline(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``<composite>/<metric>`` for the :data:`HEADLINE_METRICS` each composite has."""
    return {
        f"{name}/{metric}": row[metric]
        for name, row in table.items()
        for metric in HEADLINE_METRICS
        if metric in row
    }


def map_info(result: CompositeResult, table: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """The map page's info panel: what went in, and the main composite's headline metrics."""
    dates = [scene.datetime.date() for scene in result.stack.scenes]
    info = {
        "dates": f"{len(dates)} scenes, {min(dates)} to {max(dates)}",
        "percentile": f"q={result.settings.q:g}, {result.settings.method}",
        "mask source": result.masks.source,
    }
    for metric in HEADLINE_METRICS:
        values = {name: row[metric] for name, row in table.items() if metric in row}
        if values:
            info[metric] = ", ".join(f"{name} {value:.4g}" for name, value in values.items())
    return info


def metrics_markdown(
    table: Mapping[str, Mapping[str, float]], composites: Mapping[str, CompositeResult]
) -> str:
    """The table as markdown, one row per metric and one column per composite."""
    names = list(table)
    metrics: dict[str, None] = {}
    for row in table.values():
        metrics.update(dict.fromkeys(row))
    header = ["metric", *(f"{name} ({composites[name].masks.source})" for name in names)]
    lines = [
        "# Composite metrics",
        "",
        "Columns: the composites (mask source); definitions in composite/evidence/.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for metric in metrics:
        cells = [_format(table[name].get(metric)) for name in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
