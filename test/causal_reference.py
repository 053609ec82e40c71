"""Meta's SAM 2 driven causally: the driver lives in the package (the benchmark needs it at
run time); the tests import it from here."""
from sam2_ros.bench.reference import CausalReference, RefResult

__all__ = ["CausalReference", "RefResult"]
