"""Labeled cloud-mask datasets: the on-disk format, importers, the simulator and the DataModule."""
