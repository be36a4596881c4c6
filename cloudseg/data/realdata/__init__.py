"""Real Sentinel-2 scenes as training signal: read them (:mod:`.scenes`), find their clear sky
with the offline detectors (:mod:`.detectors`), build the simulator's spectral library from it
(:mod:`.build_library`) and render simulated clouds on real clear backgrounds
(:mod:`.backgrounds`). Command line: ``python -m cloudseg.data.realdata`` (:mod:`.cli`).
"""
