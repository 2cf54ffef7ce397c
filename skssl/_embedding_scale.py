"""An embedder's batched inference and the standardised, scaled output of its ``transform``: statistics of the
encoder output on the fit data, and their application (a mixin of :class:`skssl._base.BaseSSLEstimator`)."""

from __future__ import annotations

import numpy as np
import torch

from . import _reading, _statistics, _validation
from ._statistics import leading_variance_scaling


class StandardizedEmbedding:
    """``embedding_mean_``, ``embedding_scale_`` and ``embedding_whitening_``: computed from the encoder output on
    the fit data, applied by ``transform``; and the batched inference that computes them (a mixin; not for direct
    use)."""

    def _module_device(self):
        return next(self.module_.parameters()).device

    def _mapped_batches(self, X, fn, batch_size=None, allow_nan=False):
        """Yield ``(rows, fn(batch))`` over ``X`` in batches, ``fn`` (a module-space tensor function) as float32 numpy.

        ``allow_nan`` lets NaN in out-of-core input through to ``fn`` (missing views); infinities are rejected.
        """
        return self._module_batches(self.module_, X, fn, batch_size or max(self.batch_size_, 1024), allow_nan)

    @staticmethod
    def _module_batches(module, X, fn, batch_size, allow_nan=False):
        """:meth:`_mapped_batches` with ``fn`` a function of ``module`` (a module not yet assigned to the estimator)."""
        device = next(module.parameters()).device
        module.eval()
        check_finite = _reading.is_out_of_core(X)
        for rows, block in _reading.iter_batches(X, batch_size, check_finite=check_finite, allow_nan=allow_nan):
            with torch.inference_mode():
                values = fn(_reading.to_device(block, device)).float().cpu().numpy()
            if not allow_nan:  # the input was finite: a non-finite output is float32 overflow, never a result
                _validation.check_finite_output(values, rows)
            yield rows, values

    def _map_batches(self, X, fn, n_out, batch_size=None, allow_nan=False):
        """Apply ``fn`` (module-space tensor function) to ``X`` in batches; return a float32 numpy array."""
        out = np.empty((_reading.n_rows(X), n_out), dtype=np.float32)
        for rows, values in self._mapped_batches(X, fn, batch_size, allow_nan):
            out[rows] = values
        return out

    def _embedding_allows_nan(self, module=None):
        """Whether NaN in the input may reach ``embed`` of ``module`` (default ``module_``): the VAE's missing views."""
        return False

    def _embedding_statistics_of(self, module, X, batch_size):
        """The embedding statistics of a trained ``module`` (not yet assigned) on validated ``X``."""
        allow_nan = self._embedding_allows_nan(module)
        batches = self._module_batches(module, X, module.embed, max(batch_size, 1024), allow_nan)
        return self._embedding_statistics(z for _, z in batches)

    @staticmethod
    def _embedding_statistics(embeddings):
        """``embedding_mean_``, ``embedding_scale_`` and ``embedding_whitening_`` of the encoder outputs
        ``embeddings`` (an iterable of batches).

        Merges per-batch means and co-moment matrices (Chan et al.), so memory-mapped and sparse input is never
        loaded whole and only an (n_components, n_components) matrix is held.
        """
        mean, covariance = _statistics.streaming_mean_covariance(embeddings)
        k = len(mean)
        scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        # A float32 component resolves about eps * |mean|: a smaller spread is rounding, not signal, and
        # dividing by it would blow rounding up (or divide by zero); such a component is only centred.
        spread = scale > 10 * np.finfo(np.float32).eps * np.abs(mean)
        scale[~spread] = 1.0
        # Correlation of the standardised components (components without spread left out: they stay centred).
        correlation = np.zeros((k, k))
        block = np.ix_(spread, spread)
        correlation[block] = (covariance / np.outer(scale, scale))[block]
        return {
            "embedding_mean_": mean.astype(np.float32),
            "embedding_scale_": scale.astype(np.float32),
            "embedding_whitening_": leading_variance_scaling(correlation).astype(np.float32),
        }

    def _embedding_output(self, Z):
        """Standardise and scale encoder outputs ``Z`` (float32, modified in place) as ``transform`` does."""
        Z -= self.embedding_mean_
        Z /= self.embedding_scale_
        return Z @ self.embedding_whitening_

    def _embedding_input(self, Z):
        """Undo :meth:`_embedding_output`: the encoder outputs whose ``transform`` is ``Z``."""
        # Well conditioned: c * I with c >= n_components ** -0.25 (older saved models: eigenvalues >= k ** -0.5).
        raw = np.linalg.solve(self.embedding_whitening_.astype(np.float64), np.asarray(Z, dtype=np.float64).T).T
        return (raw * self.embedding_scale_ + self.embedding_mean_).astype(np.float32)

    def _standardized_embedding(self, X):
        """The encoder output on validated ``X``, standardised and scaled with the fit-data statistics."""
        Z = self._map_batches(X, self.module_.embed, self.n_components_, allow_nan=self._embedding_allows_nan())
        return self._embedding_output(Z)
