"""VAEEmbedder: the user-facing variational autoencoder (API, validation, data handling).

The math lives in :mod:`skssl.vae._module` (encoders, product of experts, decoders) and
:mod:`skssl.vae.likelihoods` (observation models); a model without ``views`` is a one-view model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from .. import _reading, _statistics, _validation
from .._base import BaseSSLEstimator
from .._compat import Interval, StrOptions, validate_params
from .._distributed import row_mean
from .._docstrings import fill_doc
from .._training import cuda_indices as _cuda_indices
from ..multiview import resolve_views, scan_views
from ._checks import check_single_view_values, warn_if_not_counts
from ._module import VAEModule
from .likelihoods import LIKELIHOODS, make_likelihood

SCORE_DRAWS = 16  # latent draws averaged by score_samples
# Fitted attributes that depend on the layout of the views (set, or removed, by fit and the first partial_fit).
_VIEW_ATTRIBUTES = (
    "views_",
    "view_likelihoods_",
    "view_counts_",
    "library_size_",
    "log_library_mean_",
    "log_library_std_",
)


# Parameter descriptions where the VAE differs from the other embedders (filled into its docstring by fill_doc).
VAE_PARAMETER_DOCS = {
    "hidden_dims": """\
    hidden_dims : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers (the decoder mirrors them); "auto" uses two layers of 256 (under
        1 000 features) or 512.
""",
    "dropout": """\
    dropout : float in [0, 1), default=0.1
        Dropout after each hidden layer of the encoder.
""",
    "standardize": """\
    standardize : bool, default=True
        Centre and scale each feature with statistics of the ``fit`` data (Gaussian likelihood only; ignored for
        ``likelihood="nb"``, whose encoder normalises by library size instead).
""",
    "random_state": """\
    random_state : int, RandomState instance or None, default=None
        Seeds the split, batch order, weights and latent samples: same seed, same embedding on CPU.
""",
}


@fill_doc(**VAE_PARAMETER_DOCS)
class VAEEmbedder(BaseSSLEstimator):
    """Variational autoencoder embedding of expression profiles.

    A generative model: each profile is encoded into a Gaussian posterior over ``n_components`` latent factors
    and decoded into a likelihood of the observed profile. ``likelihood="gaussian"`` suits log-scale or normalised
    data (per-gene noise variance is learned); ``likelihood="nb"`` models raw non-negative counts with a
    negative binomial as in scVI: the encoder sees ``log1p``-normalised counts, the decoder outputs gene
    proportions scaled by each sample's observed library size, with one dispersion per gene;
    ``likelihood="bernoulli"`` models binary calls (mutations, methylation calls) as independent Bernoulli
    variables.

    ``transform`` returns the posterior mean (standardised with its per-component mean and standard deviation on the fit
    data, then multiplied by one factor, ``lambda_1 ** -0.25`` for the largest principal variance ``lambda_1`` (see
    ``transform``)), ``score`` the mean evidence lower bound (ELBO) per sample, ``inverse_transform`` the decoded mean
    of such factors and ``sample`` draws new profiles.

    **Several omics at once** (``views``): the columns are split into named views (RNA-seq, miRNA, protein, copy
    number, mutations...), each with its own encoder, decoder and likelihood (``"gaussian"``, ``"nb"``, or
    ``"bernoulli"`` for 0/1 calls). The views are fused into one latent space by a product of experts (as in the
    MVAE of Wu & Goodman, 2018): each view's encoder proposes a Gaussian over the latent factors, and the posterior
    is the product of these experts and the standard normal prior. A sample lacking a view holds NaN in all of that
    view's columns; the view is then left out of its posterior and of its loss, so the sample is encoded from the
    views it has. NaN in only part of a view, a sample with no view at all, or NaN when ``views`` is None are
    errors. See :func:`skssl.multiview.assemble_views` to build such a matrix from one table per omic.

    **Several studies at once** (``fit(X, batch=study)``): every decoder (each view's, with ``views``) reads the
    one-hot batch (study) of the sample along with the latent factors, as in scVI, so the decoder explains what
    sets the studies apart and the latent factors need not encode study identity. The encoder never sees the
    batch: ``transform`` embeds samples of any study, one the model never saw included, without a batch. What
    decodes without a sample's batch (``inverse_transform``, ``sample``, ``score_samples``, ``score``) decodes
    for an average study: the mean of the one-hot codes, ``1 / n_batches`` each.

    Parameters
    ----------
    n_components : int, default=32
        Number of latent factors.
    likelihood : {"gaussian", "nb", "bernoulli"}, default="gaussian"
        Observation model: Gaussian on (log-)expression, negative binomial on raw counts, or Bernoulli on 0/1
        calls (see :mod:`skssl.vae.likelihoods`). With ``views``, the likelihood of the views whose spec does not
        name one.
    views : dict or None, default=None
        None: one view of all columns, no NaN allowed. Otherwise a multi-view VAE: a mapping from view name to the
        view's columns, or to a spec ``{"columns": columns, "likelihood": likelihood}`` with ``likelihood`` one of
        ``"gaussian"``, ``"nb"`` (non-negative counts), ``"bernoulli"`` (0/1 values). ``columns`` are integer
        positions, a ``slice``, a boolean mask, or column names when fitting on a DataFrame (resolved against
        ``feature_names_in_``). Every column must belong to exactly one view (a column in no view, in two views,
        out of range or of unknown name is a ``ValueError`` naming the view). Each view gets an encoder and a
        decoder of ``hidden_dims`` widths; ``standardize`` applies to the Gaussian views, with statistics over the
        samples that have the view.
    beta : float >= 0, default=1.0
        Weight of the KL term in the ELBO (1 is the standard VAE).
    %(training_parameters)s

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network, one view per entry of ``views`` (a single view of every column without):
        ``module_.encoder`` maps raw features to the posterior (``module_.encoder.experts[k]``: the k-th view's
        preprocessing and encoder, fused by a product of experts; ``module_.encoder_path()`` returns it),
        ``module_.decoders[k]`` and ``module_.likelihoods[k]`` the k-th view's decoder and observation model (for
        a negative-binomial view with its library-size statistics as buffers).
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` per epoch: the negative ELBO per sample divided by the number
        of features.
    n_iter_ : int
        Number of epochs run.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_ : int
        Batch size used.
    device_ : torch.device
        Device the network was trained on and is on (the CPU after ``load_model``).
    hidden_dims_ : tuple of int
        Hidden layer widths used.
    n_components_ : int
        Number of latent factors.
    embedding_mean_ : ndarray of shape (n_components_,), dtype float32
        Mean of each component of the posterior mean on the ``fit`` data (on the last chunk after
        ``partial_fit``); ``transform`` subtracts it and ``inverse_transform`` adds it back.
    embedding_scale_ : ndarray of shape (n_components_,), dtype float32
        Standard deviation of each component of the posterior mean on the same data (1 for a component with no
        spread); ``transform`` divides by it and ``inverse_transform`` multiplies by it.
    embedding_whitening_ : ndarray of shape (n_components_, n_components_), dtype float32
        Matrix that ``transform`` applies to the standardised factors: ``c * I`` with ``c = lambda_1 ** -0.25``
        for the largest principal variance ``lambda_1`` of the standardised factors on the same data (the
        identity when ``lambda_1 <= 1``; models saved by skssl 0.1.0 hold that release's symmetric matrix);
        ``inverse_transform`` undoes it.
    library_size_ : float
        Median total count per sample of the fit data (``likelihood="nb"``, without ``views``): the library size at
        which ``inverse_transform`` decodes (a copy, in float32 precision, of the buffer of ``module_`` that does).
    log_library_mean_, log_library_std_ : float
        Mean and standard deviation of the log library sizes of the fit data (``likelihood="nb"``, without
        ``views``), from which ``sample`` draws library sizes (copies of buffers of ``module_``).
    views_ : dict of str to ndarray of int
        With ``views``: the column positions of each view.
    view_likelihoods_ : dict of str to str
        With ``views``: the likelihood of each view.
    view_counts_ : dict of str to int
        With ``views``: the number of fit samples that have each view.
    batch_categories_ : ndarray of shape (n_batches,)
        The batch (study) labels given to ``fit`` (sorted), one per input of the decoders' one-hot batch code;
        only when fitted with ``batch``.
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

    Two views, the second missing for the first ten samples:

    >>> import numpy as np
    >>> X = np.log1p(counts)
    >>> calls = (counts[:, :5] > np.median(counts[:, :5], axis=0)).astype(np.float32)
    >>> X2 = np.hstack([X, calls])
    >>> X2[:10, 50:] = np.nan
    >>> views = {"rna": slice(0, 50), "calls": {"columns": slice(50, 55), "likelihood": "bernoulli"}}
    >>> mv = VAEEmbedder(n_components=4, views=views, max_epochs=3, random_state=0).fit(X2)
    >>> Z = mv.transform(X2)
    >>> Z.shape, bool(np.isfinite(Z).all())
    ((100, 4), True)
    >>> mv.view_counts_
    {'rna': 100, 'calls': 90}
    """

    _fitted_attributes = BaseSSLEstimator._fitted_attributes + (
        "library_size_",
        "log_library_mean_",
        "log_library_std_",
        "views_",
        "view_likelihoods_",
        "view_counts_",
    )

    _parameter_constraints: dict = {
        **BaseSSLEstimator._parameter_constraints,
        "likelihood": [StrOptions(set(LIKELIHOODS))],
        "views": [None, Mapping],
        "beta": [Interval(Real, 0.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=32,
        *,
        likelihood="gaussian",
        views=None,
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
        warm_start=False,
        checkpoint=None,
    ):
        self.n_components = n_components
        self.likelihood = likelihood
        self.views = views
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
        self.warm_start = warm_start
        self.checkpoint = checkpoint

    # ------------------------------------------------------------------ fitting
    _optional_fitted_attributes = (*BaseSSLEstimator._optional_fitted_attributes, *_VIEW_ATTRIBUTES)

    def _module_attributes(self, module):
        """The fitted attributes that describe the views, read from a trained ``module``."""
        if module.multiview:
            experts, likelihoods = module.encoder.experts, module.likelihoods
            return {
                "views_": {name: e.index.cpu().numpy() for name, e in zip(module.names, experts)},
                "view_likelihoods_": {name: lik.name for name, lik in zip(module.names, likelihoods)},
                "view_counts_": {name: int(c) for name, c in zip(module.names, module.view_counts.tolist())},
            }
        if module.likelihoods[0].name == "nb":
            likelihood = module.likelihoods[0]
            return {
                "library_size_": float(likelihood.library_size),
                "log_library_mean_": float(likelihood.log_library_mean),
                "log_library_std_": float(likelihood.log_library_std),
            }
        return {}

    def _multiview(self, reset):
        """Whether the data is multi-view: the ``views`` parameter at fit, the fitted network afterwards."""
        return self.views is not None if reset else self.module_.multiview

    def _validate_input(self, X, *, reset):
        multiview = self._multiview(reset)
        X = _validation.validate_X(self, X, reset=reset, allow_nan=multiview)
        if multiview and not reset:
            # At fit the same pass runs in _fit_statistics; here it checks the missing-view pattern and values.
            scan_views(X, self.views_, self.view_likelihoods_)
        return X

    def _fit_statistics(self, X):
        if self.views is None:
            statistics = _statistics.column_statistics(X)
            if self.likelihood == "nb" and statistics["min"] >= 0:  # negative values fail in _check_fit_values
                warn_if_not_counts(X, {None: slice(None)})
            elif self.likelihood == "bernoulli":
                check_single_view_values(X, "bernoulli")
            return statistics
        indices, likelihoods = resolve_views(
            self.views, X.shape[1], getattr(self, "feature_names_in_", None), self.likelihood
        )
        statistics = _statistics.column_statistics(X, allow_nan=True)
        scan = scan_views(X, indices, likelihoods)
        nb_views = {name: index for name, index in indices.items() if likelihoods[name] == "nb"}
        if nb_views:
            warn_if_not_counts(X, nb_views)
        for name, count in zip(indices, scan["present"].sum(axis=0)):
            if count == 0:
                raise ValueError(f"View {name!r} is missing (all NaN) in every sample: there is nothing to fit it on.")
        statistics["views"] = {**scan, "indices": indices, "likelihoods": likelihoods}
        return statistics

    # ------------------------------------------------------------------ training hooks
    def _check_fit_values(self, statistics):
        if "views" not in statistics and self.likelihood == "nb":  # scan_views checked each view's values
            check_single_view_values(None, "nb", minimum=statistics["min"])

    def _build_module(self, n_features, hidden_dims, statistics):
        views = statistics.get("views")
        if views is None:  # one view of every column
            row_sums = statistics.get("row_sums")  # None in the placeholder statistics of a saved model
            view_statistics = {**statistics, "standardize": self.standardize, "library_sizes": row_sums}
            likelihood = make_likelihood(self.likelihood, n_features, view_statistics)
            counts = [0 if row_sums is None else len(row_sums)]
            return VAEModule(
                [(None, likelihood)],
                hidden_dims,
                self.n_components,
                self.dropout,
                multiview=False,
                counts=counts,
                n_batches=self._n_batches(statistics),
            )
        # A network rebuilt from a saved model gets placeholder statistics without the layout: the fitted one.
        indices = views.get("indices", getattr(self, "views_", None))
        likelihoods = views.get("likelihoods", getattr(self, "view_likelihoods_", None))
        present, row_sums = views["present"], views["row_sums"]
        layout = []
        for k, (name, index) in enumerate(indices.items()):
            view_statistics = {
                "mean": statistics["mean"][index],
                "std": statistics["std"][index],
                "standardize": self.standardize,
                "library_sizes": row_sums[present[:, k], k],
            }
            layout.append((index, make_likelihood(likelihoods[name], len(index), view_statistics)))
        return VAEModule(
            layout,
            hidden_dims,
            self.n_components,
            self.dropout,
            multiview=True,
            names=list(indices),
            counts=present.sum(axis=0).tolist(),
            n_batches=self._n_batches(statistics),
        )

    def _batch_loss(self, module, x, targets=None, generator=None, shard=None):
        # Per-feature scale keeps the loss (and so the gradient clipping) comparable across gene counts.
        # targets: the batch (study) code of each row when fitted with batch=..., else None.
        elbo = module.elbo(x, self.beta, generator, batch=targets, shard=shard)
        return row_mean(-elbo.mean() / x.shape[1], shard)  # shard-weighted in a DDP fit

    # ------------------------------------------------------------------ inference
    def _validate_for_inference(self, X):
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        if not self._multiview(reset=False):
            check_single_view_values(X, self.module_.likelihoods[0].name, skip_out_of_core=True)
        return X

    def _embedding_allows_nan(self, module=None):
        return (self.module_ if module is None else module).multiview

    def transform(self, X):
        """Posterior mean of the latent factors, standardised.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), dtype float32
            The posterior mean with each component centred and scaled by its mean and standard deviation on the
            ``fit`` data (``embedding_mean_``, ``embedding_scale_``), then all multiplied by one factor,
            ``lambda_1 ** -0.25`` for their largest principal variance ``lambda_1`` there
            (``embedding_whitening_``), so that a downstream linear model sees unit-scale, well-conditioned features
            with the dominant directions kept dominant. ``inverse_transform`` undoes both.
        """
        X = self._validate_for_inference(X)
        return self._standardized_embedding(X)

    def score_samples(self, X):
        """Evidence lower bound (ELBO) of each sample: a lower bound of its log likelihood.

        For the Gaussian likelihood with ``standardize=True`` the bound is expressed in the units of ``X`` (the
        log-Jacobian of the standardisation is included), so scores of models fitted with different settings are
        comparable. The expectation over the posterior is averaged over 16 fixed latent draws shared by all rows,
        so a sample's score depends on that sample alone and repeated calls give the same values.

        With ``views``, the ELBO of each sample is over the views it has (its missing views add no term), so scores
        of samples with different views are not comparable with each other.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher means more typical of the training data; low scores flag outliers.
        """
        X = self._validate_for_inference(X)
        multiview = self._multiview(reset=False)
        device = self._module_device()
        generator = torch.Generator(device=device).manual_seed(0)
        noise = torch.randn((SCORE_DRAWS, self.n_components_), device=device, generator=generator)
        # In float64: sums over thousands of genes would otherwise differ in the last float32 digits between a
        # row scored alone and the same row scored in a batch.
        module = copy.deepcopy(self.module_).double()
        scores = np.empty(_reading.n_rows(X))
        with torch.inference_mode():
            module.eval()
            batches = _reading.iter_batches(
                X, max(self.batch_size_, 1024), check_finite=_reading.is_out_of_core(X), allow_nan=multiview
            )
            for rows, block in batches:
                x = _reading.to_device(block, device).double()
                scores[rows] = module.elbo(x, self.beta, noise=noise.double()).cpu().numpy()
                scores[rows] -= module.log_det(x).cpu().numpy()  # the standardisation of the Gaussian views
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
            Latent factors on the scale of the output of ``transform`` (standardised and scaled with
            ``embedding_mean_``, ``embedding_scale_`` and ``embedding_whitening_``, which are undone before
            decoding), e.g. the output of ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
            In the units of the fit data; for ``likelihood="nb"``, expected counts at the median library size of
            the fit data (``library_size_``). With ``views``, every view is decoded (a ``"nb"`` view at the median
            library size of that view, a ``"bernoulli"`` view as probabilities).
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float32)
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {Z.shape[1]} latent dimensions, but {type(self).__name__} has n_components="
                f"{self.n_components_}."
            )
        # Back to the posterior's own latent space, where the decoder works.
        Z = self._embedding_input(Z)
        return self._map_batches(Z, self._decode, self.n_features_in_)

    def _decode(self, z):
        return self.module_.decode(z, self.n_features_in_)

    @validate_params(
        {"n_samples": [Interval(Integral, 1, None, closed="left")], "random_state": ["random_state"]},
        prefer_skip_nested_validation=True,
    )
    def sample(self, n_samples=1, random_state=None):
        """Draw new expression profiles from the generative model.

        Latent factors come from the standard normal prior; profiles from the likelihood: Gaussian noise with the
        learned per-gene variance, or negative-binomial counts at library sizes drawn from the log-normal fitted
        to the library sizes of the fit data. With ``views``, every view of each profile is drawn (from one shared
        latent draw) from its own likelihood: ``"bernoulli"`` views give 0/1 calls; no view is missing.

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
        # The gamma draws of the negative binomial take no generator: seed torch's RNG inside a fork of it, so the
        # draws are reproducible and the caller's global RNG is left alone.
        with torch.inference_mode(), torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(seed)
            module.eval()
            z = torch.randn((n_samples, self.n_components_), device=device, generator=generator)
            out = module.sample(z, self.n_features_in_, generator)
        return out.float().cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.likelihood in ("nb", "bernoulli")
        tags.input_tags.allow_nan = self.views is not None
        return tags
