"""The interface every observation model of the VAE implements (one view's p(x | z))."""

from __future__ import annotations

from torch import nn

LOG_VAR_BOUND = 10.0  # keeps exp(log_var) finite early in training (decoder and encoder log-variances)


class Likelihood(nn.Module):
    """Observation model of one view: how its raw values reach the encoder and how the decoder output explains them.

    A subclass sets ``name`` (the string of the ``likelihood`` parameter) and implements:

    - :meth:`preprocess`: a new module mapping the view's raw values to the encoder's input;
    - :meth:`log_prob`: per-row log-likelihood of the raw values given the decoder output ``out``, summed over
      features (the training loss is its negative);
    - :meth:`mean`: the mean of p(x | z) in data units (what ``inverse_transform`` returns);
    - :meth:`sample`: a draw from p(x | z) in data units (what ``sample`` returns).

    Learned parameters of the model (noise variances, dispersions) and statistics of the fit data (library sizes)
    are parameters and buffers of the likelihood, so they travel with the module.

    Parameters
    ----------
    n_features : int
        Number of columns of the view.
    """

    name: str = ""

    def __init__(self, n_features):
        super().__init__()
        self.n_features = n_features

    @classmethod
    def from_statistics(cls, n_features, statistics):
        """Build from statistics of the fit data: ``mean``, ``std`` (per feature), ``standardize`` (bool) and
        ``library_sizes`` (row totals of the samples that have the view, or None when unknown)."""
        return cls(n_features)

    def preprocess(self):
        raise NotImplementedError

    def log_prob(self, x, out):
        """Per-row log p(x | z), shape ``out.shape[:-1]``; ``out`` may have leading latent-draw dimensions."""
        raise NotImplementedError

    def mean(self, out):
        raise NotImplementedError

    def sample(self, out, generator):
        raise NotImplementedError

    def log_det(self):
        """Log-Jacobian (summed over features) from data units to the space :meth:`log_prob` works in; None: 0.

        ``score_samples`` subtracts it so that scores are log-likelihood bounds in the units of the data.
        """
        return None
