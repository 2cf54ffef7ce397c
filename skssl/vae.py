"""VAEEmbedder: a variational autoencoder with a Gaussian (log-expression) or negative-binomial (counts) likelihood."""

from __future__ import annotations

import copy

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn

from . import _data
from ._base import BaseSSLEstimator
from ._losses import gaussian_kl, gaussian_log_likelihood, nb_log_likelihood
from ._nn import LogNormalize, Standardize, make_mlp

LOG_VAR_BOUND = 10.0  # keeps exp(log_var) finite early in training
SCORE_DRAWS = 16  # latent draws averaged by score_samples


class _VAEModule(nn.Module):
    def __init__(self, n_features, hidden_dims, n_latent, dropout, likelihood, mean, std, standardize):
        super().__init__()
        self.likelihood = likelihood
        self.n_latent = n_latent
        if likelihood == "gaussian":
            self.preprocess = Standardize(mean, std, enabled=standardize)
            self.log_var = nn.Parameter(torch.zeros(n_features))  # per-gene noise variance
        else:
            self.preprocess = LogNormalize()
            self.log_theta = nn.Parameter(torch.zeros(n_features))  # per-gene NB inverse dispersion
        self.encoder = make_mlp(n_features, hidden_dims, 2 * n_latent, dropout=dropout)
        self.decoder = make_mlp(n_latent, tuple(reversed(hidden_dims)), n_features)

    def encode(self, x):
        stats = self.encoder(self.preprocess(x))
        mean, log_var = stats[:, : self.n_latent], stats[:, self.n_latent :]
        return mean, log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)

    def embed(self, x):
        return self.encode(x)[0]

    def decode_mean(self, z, library=None):
        """Mean of p(x | z): standardised values (Gaussian) or counts at ``library`` total (NB)."""
        out = self.decoder(z)
        if self.likelihood == "gaussian":
            return out
        return torch.softmax(out, dim=-1) * library

    def elbo(self, x, beta=1.0, generator=None, noise=None):
        """Per-row evidence lower bound (in the module's data space), estimated with reparameterised samples of z.

        By default one fresh sample per row. ``noise`` of shape (n_draws, n_latent) instead uses the same standard
        normal draws for every row and averages over them: a deterministic estimate that does not depend on the
        other rows of the batch (``score_samples`` uses it).
        """
        mean, log_var = self.encode(x)
        if noise is None:
            noise = torch.randn(mean.shape, device=mean.device, generator=generator).unsqueeze(0)
        else:
            noise = noise.unsqueeze(1)  # (n_draws, 1, n_latent): broadcast over rows
        z = mean + noise * (0.5 * log_var).exp()  # (n_draws, n_rows, n_latent)
        if self.likelihood == "gaussian":
            log_lik = gaussian_log_likelihood(
                self.preprocess(x), self.decode_mean(z), self.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)
            )
        else:
            library = x.sum(dim=1, keepdim=True)
            log_lik = nb_log_likelihood(x, self.decode_mean(z, library), self.log_theta.exp())
        return log_lik.mean(dim=0) - beta * gaussian_kl(mean, log_var)


class VAEEmbedder(BaseSSLEstimator):
    """Variational autoencoder embedding of expression profiles.

    A generative model: each profile is encoded into a Gaussian posterior over ``n_components`` latent factors
    and decoded into a likelihood of the observed profile. ``likelihood="gaussian"`` suits log-scale or normalised
    data (per-gene noise variance is learned); ``likelihood="nb"`` models raw non-negative counts with a
    negative binomial as in scVI: the encoder sees ``log1p``-normalised counts, the decoder outputs gene
    proportions scaled by each sample's observed library size, with one dispersion per gene.

    ``transform`` returns the posterior mean, ``score`` the mean evidence lower bound (ELBO) per sample,
    ``inverse_transform`` the decoded mean and ``sample`` draws new profiles.

    Parameters
    ----------
    n_components : int, default=32
        Number of latent factors.
    likelihood : {"gaussian", "nb"}, default="gaussian"
        Observation model: Gaussian on (log-)expression or negative binomial on raw counts.
    beta : float >= 0, default=1.0
        Weight of the KL term in the ELBO (1 is the standard VAE).
    hidden_dims : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers (the decoder mirrors them); "auto" uses two layers of 256 (under
        1 000 features) or 512.
    dropout : float in [0, 1), default=0.1
        Dropout after each hidden layer of the encoder.
    batch_size : "auto" or int, default="auto"
        Rows per optimisation step; "auto" is a quarter of the training rows, clipped to [32, 256].
    max_epochs : "auto" or int, default="auto"
        Passes over the data; "auto" aims for about 3 000 optimisation steps (between 3 and 500 epochs).
    learning_rate : float, default=1e-3
        AdamW learning rate. Lower it if training diverges.
    weight_decay : float, default=1e-5
        AdamW weight decay.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their loss stops improving and keep the weights of
        the best epoch. Ignored when the held-out part would have fewer than 2 rows.
    validation_fraction : float in (0, 1), default=0.1
        Fraction of rows held out for early stopping.
    n_iter_no_change : "auto" or int, default="auto"
        Epochs without improvement before stopping; "auto" waits for about 200 optimisation steps, at least 10
        epochs.
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts as an improvement.
    standardize : bool, default=True
        Centre and scale each feature with statistics of the ``fit`` data (Gaussian likelihood only; ignored for
        ``likelihood="nb"``, whose encoder normalises by library size instead).
    device : str, default="auto"
        "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    precision : {"float32", "bf16"}, default="float32"
        "bf16" runs the forward and backward passes under bfloat16 autocast (fast on recent GPUs; losses and
        optimiser state stay in float32).
    random_state : int, RandomState instance or None, default=None
        Seeds the split, batch order, weights and latent samples: same seed, same embedding on CPU.
    verbose : int, default=0
        Print the losses of every epoch to stderr.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network (``module_.encoder``, ``module_.decoder``).
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` per epoch: the negative ELBO per sample divided by the number
        of features.
    n_iter_ : int
        Number of epochs run.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_ : int
        Batch size used.
    hidden_dims_ : tuple of int
        Hidden layer widths used.
    n_components_ : int
        Number of latent factors.
    library_size_ : float
        Median total count per sample of the fit data (``likelihood="nb"``): the library size at which
        ``inverse_transform`` decodes.
    log_library_mean_, log_library_std_ : float
        Mean and standard deviation of the log library sizes of the fit data (``likelihood="nb"``), from which
        ``sample`` draws library sizes.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names).

    See Also
    --------
    ContrastiveEmbedder : Contrastive learning with feature corruption (SCARF / BYOL).
    MaskedAutoencoder : Masked-feature reconstruction (VIME).

    Examples
    --------
    >>> from skssl import VAEEmbedder
    >>> from skssl.datasets import make_expression
    >>> counts, y = make_expression(n_samples=100, n_genes=50, output="counts", random_state=0)
    >>> vae = VAEEmbedder(n_components=4, likelihood="nb", max_epochs=3, random_state=0).fit(counts)
    >>> vae.transform(counts).shape
    (100, 4)
    >>> vae.sample(3, random_state=0).shape
    (3, 50)
    """

    _parameter_constraints: dict = {
        **BaseSSLEstimator._parameter_constraints,
        "likelihood": [StrOptions({"gaussian", "nb"})],
        "beta": [Interval(Real, 0.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=32,
        *,
        likelihood="gaussian",
        beta=1.0,
        hidden_dims="auto",
        dropout=0.1,
        batch_size="auto",
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=1e-5,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change="auto",
        tol=1e-4,
        standardize=True,
        device="auto",
        precision="float32",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.likelihood = likelihood
        self.beta = beta
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.standardize = standardize
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ training hooks
    def _check_fit_values(self, statistics):
        if self.likelihood == "nb":
            _check_counts_minimum(statistics["min"])
            log_library = np.log(np.maximum(statistics["row_sums"], 1.0))
            self.library_size_ = float(np.median(statistics["row_sums"]))
            self.log_library_mean_ = float(log_library.mean())
            self.log_library_std_ = float(log_library.std())

    def _build_module(self, n_features, hidden_dims, statistics):
        return _VAEModule(
            n_features,
            hidden_dims,
            self.n_components,
            self.dropout,
            self.likelihood,
            statistics["mean"],
            statistics["std"],
            self.standardize,
        )

    def _batch_loss(self, module, x, targets=None, generator=None):
        # Per-feature scale keeps the loss (and so the gradient clipping) comparable across gene counts.
        return -module.elbo(x, self.beta, generator).mean() / x.shape[1]

    # ------------------------------------------------------------------ inference
    def _validate_for_inference(self, X):
        check_is_fitted(self)
        X = _data.validate_X(self, X, reset=False)
        if self.likelihood == "nb" and not _data.is_out_of_core(X):
            _check_counts_minimum(X.data.min() if hasattr(X, "data") and hasattr(X, "indptr") and X.nnz else X.min())
        return X

    def transform(self, X):
        """Posterior mean of the latent factors.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), dtype float32
        """
        X = self._validate_for_inference(X)
        return self._map_batches(X, self.module_.embed, self.n_components_)

    def score_samples(self, X):
        """Evidence lower bound (ELBO) of each sample: a lower bound of its log likelihood.

        For the Gaussian likelihood with ``standardize=True`` the bound is expressed in the units of ``X`` (the
        log-Jacobian of the standardisation is included), so scores of models fitted with different settings are
        comparable. The expectation over the posterior is averaged over 16 fixed latent draws shared by all rows,
        so a sample's score depends on that sample alone and repeated calls give the same values.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher means more typical of the training data; low scores flag outliers.
        """
        X = self._validate_for_inference(X)
        device = self._module_device()
        generator = torch.Generator(device=device).manual_seed(0)
        noise = torch.randn((SCORE_DRAWS, self.n_components_), device=device, generator=generator)
        # In float64: sums over thousands of genes would otherwise differ in the last float32 digits between a
        # row scored alone and the same row scored in a batch.
        module = copy.deepcopy(self.module_).double()
        scores = np.empty(_data.n_rows(X))
        with torch.inference_mode():
            module.eval()
            for rows, block in _data.iter_batches(X, max(self.batch_size_, 1024), check_finite=_data.is_out_of_core(X)):
                x = _data.to_device(block, device).double()
                scores[rows] = module.elbo(x, self.beta, noise=noise.double()).cpu().numpy()
        if self.likelihood == "gaussian":
            scores -= float(torch.log(module.preprocess.scale).sum())
        return scores

    def score(self, X, y=None):
        """Mean ELBO per sample (higher is better), like ``PCA.score``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    def inverse_transform(self, X):
        """Decode latent factors into expression profiles (the mean of p(x | z)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent factors, e.g. the output of ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
            In the units of the fit data; for ``likelihood="nb"``, expected counts at the median library size of
            the fit data (``library_size_``).
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float32)
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {Z.shape[1]} latent dimensions, but {type(self).__name__} has n_components="
                f"{self.n_components_}."
            )
        return self._map_batches(Z, self._decode, self.n_features_in_)

    def _decode(self, z, library=None):
        if self.likelihood == "gaussian":
            return self.module_.preprocess.inverse(self.module_.decode_mean(z))
        if library is None:
            library = torch.full((z.shape[0], 1), self.library_size_, device=z.device)
        return self.module_.decode_mean(z, library)

    @validate_params(
        {"n_samples": [Interval(Integral, 1, None, closed="left")], "random_state": ["random_state"]},
        prefer_skip_nested_validation=True,
    )
    def sample(self, n_samples=1, random_state=None):
        """Draw new expression profiles from the generative model.

        Latent factors come from the standard normal prior; profiles from the likelihood: Gaussian noise with the
        learned per-gene variance, or negative-binomial counts at library sizes drawn from the log-normal fitted
        to the library sizes of the fit data.

        Parameters
        ----------
        n_samples : int, default=1
            Number of profiles.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_in_), dtype float32
        """
        check_is_fitted(self)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        device = self._module_device()
        generator = torch.Generator(device=device).manual_seed(seed)
        module = self.module_
        with torch.inference_mode():
            module.eval()
            z = torch.randn((n_samples, self.n_components_), device=device, generator=generator)
            if self.likelihood == "gaussian":
                mean = module.decode_mean(z)
                std = (0.5 * module.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)).exp()
                noise = torch.randn(mean.shape, device=device, generator=generator)
                out = module.preprocess.inverse(mean + noise * std)
            else:
                log_library = self.log_library_mean_ + self.log_library_std_ * torch.randn(
                    (n_samples, 1), device=device, generator=generator
                )
                mu = module.decode_mean(z, log_library.exp())
                theta = module.log_theta.exp().expand_as(mu)
                # Gamma-Poisson mixture == negative binomial with mean mu and inverse dispersion theta.
                rate = torch._standard_gamma(theta) * (mu / theta)
                out = torch.poisson(rate, generator=generator)
        return out.float().cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.likelihood == "nb"
        return tags


def _check_counts_minimum(minimum):
    if minimum < 0:
        raise ValueError(
            f"Negative values in data passed to VAEEmbedder (minimum {minimum:g}): likelihood='nb' models "
            "non-negative counts. "
            "Pass raw counts, or use likelihood='gaussian' for log-scale or normalised data."
        )
