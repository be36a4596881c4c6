"""Third-party cloud detectors as pure functions (arrays in, project class codes out), and the
consensus of independent detectors that serves as a reference on real scenes without labels.

- :mod:`~cloudseg.detectors.ukis`: ukis-csmask (ONNX, CPU, weights in the package);
- :mod:`~cloudseg.detectors.omnicloudmask`: OmniCloudMask (weights given by the user);
- :mod:`~cloudseg.detectors.windows`: window-by-window runs for detectors that hold whole images;
- :mod:`~cloudseg.detectors.consensus`: the agreement reference and its scores (numpy only).

The mask producers (:mod:`cloudseg.inference.producers`) wrap these for scenes.
"""
