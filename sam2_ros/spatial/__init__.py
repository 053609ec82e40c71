"""Per-object 3D from an aligned depth image: pure numpy, no ROS.

camera.py (intrinsics, depth units), estimate.py (robust per-object centroid and box),
pairing.py (colour-depth pairing by stamp), throttle.py (warnings throttled per kind).
"""
