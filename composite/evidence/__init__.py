"""Evidence that a composite is cloud-free and seamless, computed in the same run.

:class:`EvidenceReporter` is the reporter :func:`composite.run.run_composite` attaches unless the
config says ``evaluation=none`` (its result is ``run.json["reports"]["evidence"]``). Once the main
composite is written, it

1. composites **baselines**: the same stack onto the same grid and bands with other mask sources
   (``evaluation.baselines``; ``none`` is Sentinel Hub's plain 25th percentile without SCL,
   ``temporal`` the multi-temporal test alone; the others are single-date masks alone) into
   ``<out>/baselines/<source>/``, each with its own quicklooks and ``run.json``, through the main
   run's executor. A source that does not apply is skipped with its reason: the main run's own
   source; ``scl`` when a scene has no SCL layer; ``s2cloudless`` when a scene lacks one of its
   10 L1C bands (B10 included); ``model`` without ``ckpt``;
2. finds a **reference clear surface**: ``evaluation.reference`` (a reflectance COG with band
   descriptions), else, on a simulated stack (a ``stack.json`` listing each scene's truth next to
   the scenes), the same percentile settings applied to the truth surfaces with no masks on the
   same grid, written once per run to ``<out>/reference/``;
3. computes the **metrics** of every composite (main, baselines, the truth reference itself as a
   sanity row) with :mod:`composite.metrics`:

   - ``share_clear_obs_0`` / ``_1_2`` / ``_3plus`` from ``count.tif``, over the stack's footprint
     (pixels where at least one scene has data);
   - ``model_residual_cloud`` / ``model_residual_shadow``: the checkpoint (``ckpt``) run on the
     composite as a scene, exactly as the masks run it, written to ``<composite dir>/model_check/``;
     the share of its predicted pixels that are thick or thin cloud / cloud shadow;
   - ``residual_cloud`` / ``residual_shadow`` (simulated stacks, not the reference row): the
     share of pixels whose value, in any band, is made of an observation the truth masks call
     cloud (thick or thin) / shadow. For observation-picking methods the observations are the
     dates in ``provenance.tif``; for ``linear`` they are found again from the stack: each strip
     of the metrics grid is read as the composite's windows are (the composite's own stack and
     exclusion masks, :func:`composite.driver.read_window_stack`) and ranked with the kernel's
     ranks (:func:`composite.metrics.percentile_observations`);
   - against the reference: ``brighter_than_reference`` / ``darker_than_reference`` (brightness
     beyond a tolerance; they also move with seasonal sampling, see :mod:`composite.metrics`)
     and ``mae_<band>``, ``rmse_<band>``, ``ssim_<band>`` with their means over bands
     (``mae_mean``...);
   - ``seam_*`` (main composite only): the overlap with ``evaluation.compare_with``, another
     tile's composite.

   Metrics are computed on the composite grid when it has at most ``evaluation.max_pixels``
   pixels, else on that grid decimated by an integer factor (rasterio ``out_shape`` reads through
   the COG overviews; reflectance through the scene reader); ``run.json`` records which. The
   table goes to ``<out>/metrics.json`` (``{composite: {metric: value}}``) and ``<out>/metrics.md``;
4. writes ``<out>/composite_rgb.png``, ``<out>/composite_gray.png`` and ``<out>/map.html`` (an
   offline Leaflet page: the composite, each baseline, the truth reference, the valid-count raster,
   with the temporal test the exclusion sources; an info panel with dates, percentile, mask
   source and headline metrics) and, with the temporal test, ``<out>/exclusion_sources.png``
   (observations excluded by the single-date mask, the test, both, and overruled calls);
5. logs the table, headline scalars and quicklooks to W&B when ``logger=wandb``
   (:mod:`composite.wandb_log`).

Names of the table's rows: ``composite`` (the main run), ``baseline_<source>``, ``reference``.

Modules: :mod:`~composite.evidence.settings` (what the config says), ``baselines`` (planning,
quicklooks), ``truth`` (a simulated stack's truth), ``view`` (reading on the metrics grid),
``residuals`` (reference errors and residual cloud/shadow), ``tables`` (names, tables, captions),
``reporter`` (:class:`~composite.evidence.reporter.EvidenceReporter`, which puts them
together). The package imports none of them itself: the settings load without torch.
"""
