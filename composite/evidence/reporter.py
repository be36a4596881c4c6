"""The evidence reporter: baselines, reference, metrics, pictures and W&B for a finished composite
(see :mod:`composite.evidence`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cloudseg.inference.producers import build_producer
from cloudseg.sentinel2.bands import RGB_BANDS
from cloudseg.sentinel2.cog import atomic_path
from composite.cluster import Executor
from composite.evidence.baselines import plan_baselines, quicklook_reporter
from composite.evidence.residuals import (
    Reference,
    model_residual,
    percentile_contamination,
    picked_dates_contamination,
    reference_metrics,
)
from composite.evidence.settings import EvaluationSettings, EvidenceSettings
from composite.evidence.tables import (
    MAIN,
    MAP_PAGE,
    METRICS_JSON,
    METRICS_MD,
    REFERENCE,
    headline,
    layer_name,
    map_info,
    metrics_markdown,
)
from composite.evidence.truth import StackTruth, find_truth
from composite.evidence.view import MetricsView, metrics_view, read_on_view
from composite.masking import MaskSettings
from composite.metrics import BRIGHTNESS_BANDS, observation_shares, seam_error
from composite.outputs import write_json
from composite.pipeline import CompositeResult, composite_stack
from composite.quicklook import DEFAULT_STRETCH, auto_stretch, read_bands_preview
from composite.stack import Stack, StackSettings, build_stack
from composite.temporal_evidence import CHART, sources_chart, sources_map_layer
from composite.wandb_log import log_evidence
from composite.webmap import MapLayer, count_map_layer, map_layers_from_cog, write_map_page

log = logging.getLogger(__name__)


class EvidenceReporter:
    """Baselines, reference, metrics, pictures and W&B for a finished composite (see the module
    docstring), called with the main :class:`CompositeResult`.

    Besides its own settings it needs the main run's mask settings (baselines vary their source;
    ``ckpt`` runs on the composites), the stack's source (a simulated stack's truth), the work
    folder and the executor the baselines run on, and the config to log to W&B.
    """

    def __init__(
        self,
        settings: EvidenceSettings,
        *,
        masks: MaskSettings,
        stack_source: str | Sequence[str],
        work_dir: str | Path,
        executor: Executor,
        progress: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.masks = masks
        self.stack_source = stack_source
        self.work_dir = work_dir
        self.executor = executor
        self.progress = progress
        self.config = dict(config or {})

    @property
    def evaluation(self) -> EvaluationSettings:
        return self.settings.evaluation

    def __call__(self, result: CompositeResult) -> dict[str, Any]:
        out_dir = result.outputs.out_dir
        timing: dict[str, float] = {}
        stretch = self.shared_stretch(result)
        report: dict[str, Any] = {
            "quicklooks": quicklook_reporter(self.settings.quicklook, stretch)(result)
        }
        with timed(timing, "baselines"):
            planned, skipped = plan_baselines(self.evaluation.baselines, self.masks, result.stack)
            baselines = {
                source: self.composite_again(
                    result, result.stack, masks, out_dir / "baselines" / source, stretch
                )
                for source, masks in planned.items()
            }
        report["baselines"] = {
            "computed": {source: str(b.outputs.out_dir) for source, b in baselines.items()},
            "skipped": skipped,
        }
        with timed(timing, "reference"):
            truth = find_truth(self.stack_source, result.stack) if self.evaluation.truth else None
            reference = self.reference(result, truth, stretch)
        report["reference"] = reference.record() if reference else None
        composites = {MAIN: result, **{f"baseline_{s}": b for s, b in baselines.items()}}
        if reference is not None and reference.result is not None:
            composites[REFERENCE] = reference.result
        with timed(timing, "metrics"):
            view, table, not_computed = self.measure(composites, reference, truth)
        report["metrics_grid"] = view.record()
        report["metrics"] = table
        report["not_computed"] = not_computed
        write_json(out_dir / METRICS_JSON, table)
        with atomic_path(out_dir / METRICS_MD) as tmp:
            tmp.write_text(metrics_markdown(table, composites))
        report["metrics_json"], report["metrics_md"] = METRICS_JSON, METRICS_MD
        with timed(timing, "map"):
            report["map"] = self.map_page(result, composites, table, stretch).name
            excluded_by = result.record["temporal"].get("excluded_by")
            if excluded_by:
                title = f"excluded observations, masks {result.masks.source} + temporal test"
                report["exclusion_sources_chart"] = sources_chart(
                    excluded_by, out_dir / CHART, title
                ).name
        with timed(timing, "wandb"):
            report["wandb"] = log_evidence(
                self.settings.logger,
                out_dir,
                table=table,
                headline=headline(table),
                images=self.quicklook_images(composites),
                config=self.config,
            )
        report["timing_s"] = {key: round(value, 3) for key, value in timing.items()}
        return report

    def measure(
        self,
        composites: Mapping[str, CompositeResult],
        reference: Reference | None,
        truth: StackTruth | None,
    ) -> tuple[MetricsView, dict[str, dict[str, float]], dict[str, dict[str, str]]]:
        """The metrics grid, the table and, per composite, why some metrics were not computed."""
        main = composites[MAIN]
        view = metrics_view(
            main.grid, main.stack, main.bands[0], self.evaluation.max_pixels, self.progress
        )
        table: dict[str, dict[str, float]] = {}
        not_computed: dict[str, dict[str, str]] = {}
        for name, composite in tqdm(
            composites.items(), desc="composite metrics", disable=not self.progress
        ):
            table[name], why = self.metrics(name, composite, reference, truth, view)
            if why:
                not_computed[name] = why
        if self.evaluation.compare_with:
            table[MAIN].update(
                seam_error(
                    main.outputs.composite,
                    self.evaluation.compare_with,
                    tolerance=self.evaluation.seam_tolerance,
                    max_pixels=self.evaluation.max_pixels,
                )
            )
        return view, table, not_computed

    def shared_stretch(self, result: CompositeResult) -> tuple[float, float]:
        """The stretch every picture uses; ``auto``: from the main composite's RGB preview."""
        stretch = self.settings.quicklook.stretch
        if stretch != "auto":
            return tuple(stretch)
        if not all(band in result.bands for band in RGB_BANDS):
            return DEFAULT_STRETCH
        rgb, _ = read_bands_preview(
            result.outputs.composite, RGB_BANDS, self.settings.quicklook.max_size
        )
        return auto_stretch(rgb)

    def composite_again(
        self,
        result: CompositeResult,
        stack: Stack,
        masks: MaskSettings,
        out_dir: Path,
        stretch: tuple[float, float],
    ) -> CompositeResult:
        """``stack`` composited like the main run (same grid, bands and percentile settings)
        with ``masks``, into ``out_dir``, with its quicklooks."""
        log.info("Compositing %s (mask source %s) for comparison.", out_dir, masks.source)
        return composite_stack(
            stack,
            masks,
            dataclasses.replace(result.settings, bands=result.bands),
            out_dir=out_dir,
            work_dir=self.work_dir,
            executor=self.executor,
            grid=result.grid,
            config={"compared_with": str(result.outputs.out_dir)},
            reporters={"quicklooks": quicklook_reporter(self.settings.quicklook, stretch)},
            progress=self.progress,
        )

    def reference(
        self,
        result: CompositeResult,
        truth: StackTruth | None,
        stretch: tuple[float, float],
    ) -> Reference | None:
        """``evaluation.reference``, else the truth surfaces composited without masks."""
        if self.evaluation.reference:
            return Reference(Path(self.evaluation.reference), "file")
        if truth is None:
            return None
        log.info("Simulated stack (%s): compositing its truth surfaces.", truth.description)
        truth_stack = build_stack(
            StackSettings(source=truth.surfaces, deduplicate=False), progress=self.progress
        )
        composite = self.composite_again(
            result,
            truth_stack,
            MaskSettings(source="none", temporal="none", cache_dir=self.masks.cache_dir),
            result.outputs.out_dir / "reference",
            stretch,
        )
        return Reference(composite.outputs.composite, "truth", composite)

    def metrics(
        self,
        name: str,
        composite: CompositeResult,
        reference: Reference | None,
        truth: StackTruth | None,
        view: MetricsView,
    ) -> tuple[dict[str, float], dict[str, str]]:
        """The metrics of one composite, and why the ones it lacks were not computed."""
        if not view.footprint.any():
            log.warning(
                "%s has no usable pixel: no scene of the stack has data on the output grid.",
                composite.outputs.composite,
            )
            return {}, {"all": "no usable pixel: no scene of the stack has data on the grid"}
        metrics = observation_shares(read_on_view(composite.outputs.count, view)[0], view.footprint)
        missing: dict[str, str] = {}
        if metrics["share_clear_obs_0"] == 1.0:
            log.warning(
                "%s has no valid pixel: every observation was masked (masks.inference."
                "rule.clear_threshold or masks.exclude too strict for this model?).",
                composite.outputs.composite,
            )
            return metrics, {"all": "the composite has no valid pixel (every observation masked)"}
        masks = self.masks
        if not (self.evaluation.model_residual and masks.checkpoint):
            missing["model_residual"] = "no checkpoint (ckpt) or evaluation.model_residual=false"
        else:
            model = build_producer("model", checkpoint=masks.checkpoint, inference=masks.inference)
            lacking = model.missing(composite.bands)
            if lacking:
                missing["model_residual"] = f"the composite lacks the model's bands {lacking}"
            else:
                # The "composite metrics" bar is this stage's line: no per-composite window bars.
                predictor = model.predictor(False)
                metrics.update(model_residual(composite.outputs.composite, predictor, view))
        if reference is None:
            missing["reference"] = "no evaluation.reference and no simulated truth"
        else:
            metrics.update(
                reference_metrics(
                    composite.outputs.composite, reference.path, composite.bands, view
                )
            )
            if not all(band in composite.bands for band in BRIGHTNESS_BANDS):
                missing["brightness"] = (
                    f"brighter/darker_than_reference need {list(BRIGHTNESS_BANDS)}"
                )
        if name == REFERENCE:
            missing["residual"] = "the reference is the truth surfaces: none of it is cloud"
        elif truth is None:
            missing["residual"] = (
                "residual cloud/shadow need a simulated stack's truth masks (stack.json) and "
                "evaluation.truth=true; brighter/darker_than_reference compare brightness instead"
            )
        else:
            metrics.update(self.residual(composite, truth, view))
        return metrics, missing

    def residual(
        self, composite: CompositeResult, truth: StackTruth, view: MetricsView
    ) -> dict[str, float]:
        """``residual_cloud`` / ``residual_shadow``: the observations a composite is made of,
        from its provenance when it records them, else from its stack and masks."""
        if composite.outputs.provenance is not None:
            return picked_dates_contamination(composite.outputs.provenance, truth, view)
        return percentile_contamination(composite, truth, view, self.work_dir)

    def map_page(
        self,
        result: CompositeResult,
        composites: Mapping[str, CompositeResult],
        table: Mapping[str, Mapping[str, float]],
        stretch: tuple[float, float],
    ) -> Path:
        """``<out>/map.html``: every composite of the table and the main valid-count raster."""
        bands = RGB_BANDS if all(band in result.bands for band in RGB_BANDS) else result.bands
        layers: list[MapLayer] = []
        bounds = None
        for name, composite in composites.items():
            layer, layer_bounds = map_layers_from_cog(
                composite.outputs.composite,
                name=layer_name(name, composite),
                bands=bands,
                max_size=self.settings.quicklook.max_size,
                stretch=stretch,
                visible=name == MAIN,
            )
            layers.append(layer)
            bounds = bounds or layer_bounds
        count_layer, _ = count_map_layer(
            result.outputs.count,
            name=f"valid observations (0 red, 1..{len(result.stack)} dark to bright)",
            max_count=len(result.stack),
            max_size=self.settings.quicklook.max_size,
        )
        layers.append(count_layer)
        if result.outputs.exclusion_sources is not None:
            layers.append(
                sources_map_layer(
                    result.outputs.exclusion_sources, max_size=self.settings.quicklook.max_size
                )[0]
            )
        return write_map_page(
            result.outputs.out_dir / MAP_PAGE,
            layers,
            bounds,
            title="cloudfree composite",
            info=map_info(result, table),
        )

    @staticmethod
    def quicklook_images(composites: Mapping[str, CompositeResult]) -> dict[str, Path]:
        """The quicklook PNGs that exist, as ``<composite>_rgb``/``<composite>_gray``."""
        images = {}
        for name, composite in composites.items():
            for kind in ("rgb", "gray"):
                path = composite.outputs.out_dir / f"composite_{kind}.png"
                if path.is_file():
                    images[f"{name}_{kind}"] = path
        return images


@contextmanager
def timed(timing: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timing[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timing[key] = timing.get(key, 0.0) + time.perf_counter() - started
