"""The observation models of :class:`skssl.VAEEmbedder`, by the name its ``likelihood`` parameter and view specs use.

Each is a small :class:`torch.nn.Module` in its own module (``_gaussian``, ``_nb``, ``_bernoulli``) implementing
:class:`Likelihood`: ``preprocess`` (what the encoder sees), ``log_prob``, ``mean`` and ``sample``.

Examples
--------
>>> from skssl.vae.likelihoods import LIKELIHOODS
>>> sorted(LIKELIHOODS)
['bernoulli', 'gaussian', 'nb']
"""

from __future__ import annotations

from ._bernoulli import Bernoulli
from ._gaussian import Gaussian
from ._likelihood import LOG_VAR_BOUND, Likelihood
from ._nb import NegativeBinomial

LIKELIHOODS = {cls.name: cls for cls in (Gaussian, NegativeBinomial, Bernoulli)}

__all__ = ["LIKELIHOODS", "LOG_VAR_BOUND", "Bernoulli", "Gaussian", "Likelihood", "NegativeBinomial", "make_likelihood"]


def make_likelihood(name, n_features, statistics):
    """The likelihood called ``name`` for a view of ``n_features`` columns, from statistics of the fit data.

    ``statistics`` holds ``mean``, ``std`` (per feature of the view), ``standardize`` and ``library_sizes`` (see
    :meth:`Likelihood.from_statistics`); each likelihood reads the ones it needs.
    """
    try:
        cls = LIKELIHOODS[name]
    except KeyError:
        raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {name!r}.") from None
    return cls.from_statistics(n_features, statistics)
