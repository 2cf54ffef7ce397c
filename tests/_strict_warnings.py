"""Warnings as errors, for tests that a fit raises none."""

import warnings


def every_warning_an_error():
    """Inside ``warnings.catch_warnings()``: every warning is an error, except one that is not skssl's.

    scikit-learn 1.6 passes ``iprint`` to SciPy's L-BFGS-B, which new SciPy deprecates: their warning, raised by
    ``LogisticRegression`` with or without skssl in front of it (CI runs the suite on scikit-learn 1.6.1 too).
    """
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", message="scipy.optimize: The `disp` and `iprint`", category=DeprecationWarning)
