"""Importers: turn users' labels (hand-made, product masks, public datasets) into one dataset.

Every importer writes through :class:`cloudseg.data.manifest.DatasetWriter`; the command line is
``cloudfree-import`` (:mod:`cloudseg.data.importers.cli`).
"""
