"""Synthetic gene-expression data sets."""

# License: BSD-3-Clause

from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
from joblib import cpu_count
from sklearn.utils import Bunch, check_random_state

from .preprocessing import _log_cpm

__all__ = ["make_compendium", "make_expression"]

# Constants of the generative model (natural-log scale). They are chosen to
# resemble bulk RNA-seq of a heterogeneous cohort rather than to be tuned.
_BASELINE_SD = 2.0  # spread of gene baseline log-abundances (~4 decades)
_OFF_FRACTION = 0.1  # genes that are barely expressed in this "tissue"
_OFF_SHIFT = -4.0  # their log-abundance offset
_LIBRARY_SD = 0.35  # log-normal spread of library sizes
_DISPERSION_SD = 0.5  # gene-to-gene log spread of the NB dispersion
_BATCH_SD = 0.3  # per-batch gene-wise log-fold shift
_LOADING_MEAN = 0.12  # mean absolute loading of a gene on its program
_POSITIVE_LOADINGS = 0.8  # fraction of program genes that go up with it
_CLASS_SEPARATION = 3.0  # class-mean distance (x signal_strength), unit-noise scale
# Above this Poisson mean the Poisson part is drawn from its normal limit:
# exact Poisson sampling dominates the run time otherwise, and at these
# means it adds a tiny fraction of the gamma (biological) variance.
_NORMAL_POISSON_MIN = 30.0
# Cells simulated per row block (bounds the temporaries' memory).
_BLOCK_CELLS = 2_000_000


def _check_int(value, name, minimum):
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_real(value, name, *, low=0.0, high=None, low_inclusive=False):
    if not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    too_low = value < low if low_inclusive else value <= low
    if too_low or (high is not None and value > high):
        bounds = f"{'[' if low_inclusive else '('}{low}, {high if high else 'inf'}"
        bounds += "]" if high is not None else ")"
        raise ValueError(f"{name} must be in {bounds}, got {value}.")
    return float(value)


def _class_means(rng, n_classes, n_informative):
    """Well-separated class centres in the space of the informative programs."""
    G = rng.standard_normal((n_informative, n_classes))
    if n_classes <= n_informative:
        # Orthonormal centres: every pair of classes is equally far apart.
        Q, R = np.linalg.qr(G)
        centres = (Q * np.sign(np.diag(R))).T
    else:
        centres = G.T / np.linalg.norm(G, axis=0)[:, None]
    centres -= centres.mean(axis=0)
    # Rescale so the mean pairwise distance is _CLASS_SEPARATION.
    diff = centres[:, None, :] - centres[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))[np.triu_indices(n_classes, 1)].mean()
    return centres * (_CLASS_SEPARATION / dist)


def _negative_binomial(rng, mu, shape):
    """Gamma-Poisson draws with mean `mu` and gene-wise gamma `shape` (=1/phi)."""
    # Biological (gamma) variation, then sequencing (Poisson) sampling.
    lam = rng.standard_gamma(shape, size=mu.shape, dtype=np.float32)
    lam *= mu / shape
    counts = np.empty(mu.shape, dtype=np.float32)
    small = lam < _NORMAL_POISSON_MIN
    counts[small] = rng.poisson(lam[small])
    big = lam[~small]
    noise = rng.standard_normal(big.size, dtype=np.float32)
    # Clipping only matters beyond 5.5 sd below the mean.
    counts[~small] = np.maximum(np.rint(big + np.sqrt(big) * noise), 0.0)
    return counts


def make_expression(
    n_samples=500,
    n_genes=2000,
    n_classes=3,
    *,
    n_programs=8,
    n_informative_programs=None,
    program_size=0.03,
    n_batches=2,
    output="log_cpm",
    signal_strength=1.0,
    mean_library_size=2e6,
    dispersion=0.2,
    random_state=None,
    return_info=False,
):
    """Generate a synthetic bulk RNA-seq cohort with a latent class structure.

    Genes have log-normal baseline abundances spanning several orders of
    magnitude. A few latent *gene programs* (co-expressed modules, each a
    sparse set of genes with signed loadings) vary in activity from sample
    to sample; the class of a sample shifts the mean activity of the
    *informative* programs only, the others are nuisance variation. Each
    sample also gets a library size (log-normal) and a batch, and each
    batch shifts every gene by its own log-fold change. Counts are drawn
    from a negative binomial with gene-wise dispersion, so lowly expressed
    genes have many zeros.

    The class signal carried by any single gene is weak compared with the
    noise, but it is shared by the genes of the informative programs, so a
    model that pools co-expressed genes (a learned representation) can
    recover it from few labels.

    Parameters
    ----------
    n_samples : int, default=500
        Number of samples (rows); at least `n_classes`.

    n_genes : int, default=2000
        Number of genes (columns); at least 10.

    n_classes : int, default=3
        Number of classes; at least 2. Classes are balanced.

    n_programs : int, default=8
        Number of latent gene programs; at least 1.

    n_informative_programs : int, default=None
        Number of programs whose activity depends on the class, between 1
        and `n_programs`. None means ``min(3, n_programs)``.

    program_size : float, default=0.03
        Fraction of the genes in each program, in (0, 1]. Programs are drawn
        independently, so they may share genes.

    n_batches : int, default=2
        Number of batches; at least 1 (1 means no batch effect).

    output : {"log_cpm", "counts"}, default="log_cpm"
        ``"counts"`` returns the raw integer counts (as float32);
        ``"log_cpm"`` returns ``log2(CPM + 1)``, identical to
        ``LogCPM().fit_transform(counts)``.

    signal_strength : float, default=1.0
        Multiplies the distance between the class means of the informative
        program activities (whose within-class standard deviation is 1).
        0 gives labels unrelated to the data.

    mean_library_size : float, default=2e6
        Mean total count per sample.

    dispersion : float, default=0.2
        Typical negative-binomial dispersion ``phi`` (variance
        ``mu + phi * mu**2``); gene-wise values scatter log-normally
        around it.

    random_state : int, RandomState instance or None, default=None
        Determines all random draws. Pass an int for reproducible output.

    return_info : bool, default=False
        If True, also return a :class:`~sklearn.utils.Bunch` describing the
        ground truth.

    Returns
    -------
    X : ndarray of shape (n_samples, n_genes), dtype=float32
        Expression matrix, on the scale given by `output`.

    y : ndarray of shape (n_samples,), dtype=int64
        Class labels ``0 .. n_classes - 1``.

    info : :class:`~sklearn.utils.Bunch`
        Only if `return_info` is True, with fields

        - ``activities``: (n_samples, n_programs) program activities;
        - ``loadings``: (n_programs, n_genes) sparse gene loadings
          (natural-log fold change per unit of activity);
        - ``class_programs``: indices of the informative programs;
        - ``class_means``: (n_classes, n_informative_programs) mean
          activities of each class in the informative programs;
        - ``class_effects``: (n_classes, n_genes) shift of each class's
          mean log-abundance (natural log) against the average class,
          ``class_means @ loadings[class_programs]`` (before the
          normalisation of each profile to proportions);
        - ``informative_genes``: sorted indices of the genes that truly
          separate the classes, those with a non-zero ``class_effects``
          column (the genes of the informative programs);
        - ``batch``: (n_samples,) batch of each sample;
        - ``library_size``: (n_samples,) total count of each sample;
        - ``gene_names``: (n_genes,) gene identifiers;
        - ``base_expression``: (n_genes,) baseline expression proportions;
        - ``dispersion``: (n_genes,) gene-wise dispersions;
        - ``counts``: (n_samples, n_genes) raw counts, only when
          ``output="log_cpm"``.

    Notes
    -----
    For sample ``i`` and gene ``g`` the expected count is
    ``L_i * softmax_g(b_g + sum_k a_ik W_kg + B_{batch(i), g})`` where ``b``
    are the baseline log-abundances, ``a`` the activities (standard normal,
    plus the class mean for the informative programs), ``W`` the loadings
    and ``B`` the batch shifts. Counts are gamma-Poisson (negative-binomial)
    draws around it; for Poisson means above 30 the Poisson step uses its
    normal limit, for speed.

    Sampling costs roughly 0.1 microsecond of CPU per matrix entry. Row
    blocks are simulated in threads (each with its own random stream, so
    the result does not depend on the number of cores), so a 10 000 x
    20 000 matrix needs about 25 CPU-seconds spread over the cores.

    Examples
    --------
    >>> from skssl.datasets import make_expression
    >>> X, y = make_expression(n_samples=60, n_genes=300, random_state=0)
    >>> X.shape, X.dtype, y.shape
    ((60, 300), dtype('float32'), (60,))
    >>> sorted(set(y.tolist()))
    [0, 1, 2]
    >>> counts, y, info = make_expression(
    ...     n_samples=60, n_genes=300, output="counts", random_state=0,
    ...     return_info=True)
    >>> info.activities.shape, info.loadings.shape, info.class_programs
    ((60, 8), (8, 300), array([0, 1, 2]))
    >>> info.class_effects.shape, len(info.informative_genes)  # 3 programs of 9 genes
    ((3, 300), 27)
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_genes = _check_int(n_genes, "n_genes", 10)
    n_classes = _check_int(n_classes, "n_classes", 2)
    if n_samples < n_classes:
        raise ValueError(f"n_samples={n_samples} must be >= n_classes={n_classes} so that every class has a sample.")
    n_programs = _check_int(n_programs, "n_programs", 1)
    if n_informative_programs is None:
        n_informative_programs = min(3, n_programs)
    n_informative_programs = _check_int(n_informative_programs, "n_informative_programs", 1)
    if n_informative_programs > n_programs:
        raise ValueError(f"n_informative_programs={n_informative_programs} must be <= n_programs={n_programs}.")
    program_size = _check_real(program_size, "program_size", high=1.0)
    n_batches = _check_int(n_batches, "n_batches", 1)
    if output not in ("log_cpm", "counts"):
        raise ValueError(f"output must be 'log_cpm' or 'counts', got {output!r}.")
    signal_strength = _check_real(signal_strength, "signal_strength", low_inclusive=True)
    mean_library_size = _check_real(mean_library_size, "mean_library_size")
    dispersion = _check_real(dispersion, "dispersion")

    # A Generator is much faster than RandomState for gamma/normal draws;
    # seed it from check_random_state so RandomState instances work too.
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)

    # Genes: baseline abundances and dispersions.
    base_log = _BASELINE_SD * rng.standard_normal(n_genes)
    base_log[rng.random(n_genes) < _OFF_FRACTION] += _OFF_SHIFT
    base_log -= np.log(np.exp(base_log).sum())
    gene_dispersion = dispersion * np.exp(_DISPERSION_SD * rng.standard_normal(n_genes) - _DISPERSION_SD**2 / 2)

    # Programs: sparse signed loadings.
    size = max(2, int(round(program_size * n_genes)))
    members = rng.random((n_programs, n_genes)).argsort(axis=1)[:, :size]
    magnitude = rng.gamma(4.0, _LOADING_MEAN / 4.0, size=(n_programs, size))
    sign = np.where(rng.random((n_programs, size)) < _POSITIVE_LOADINGS, 1.0, -1.0)
    loadings = np.zeros((n_programs, n_genes))
    np.put_along_axis(loadings, members, sign * magnitude, axis=1)

    # Samples: balanced classes, activities, batches, library sizes.
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    # Programs are exchangeable, so the informative ones are simply the first.
    class_programs = np.arange(n_informative_programs)
    class_means = signal_strength * _class_means(rng, n_classes, n_informative_programs)
    activities = rng.standard_normal((n_samples, n_programs))
    activities[:, class_programs] += class_means[y]
    batch = rng.integers(n_batches, size=n_samples)
    batch_shift = _BATCH_SD * rng.standard_normal((n_batches, n_genes))
    if n_batches == 1:
        batch_shift[:] = 0.0
    library_size = mean_library_size * np.exp(_LIBRARY_SD * rng.standard_normal(n_samples) - _LIBRARY_SD**2 / 2)

    counts = np.empty((n_samples, n_genes), dtype=np.float32)
    X = counts if output == "counts" else np.empty_like(counts)
    shape = (1.0 / gene_dispersion).astype(np.float32)

    # float32 is ample for expected counts and halves the cost of exp().
    activities32 = activities.astype(np.float32)
    loadings32 = loadings.astype(np.float32)
    base32 = base_log.astype(np.float32)
    batch_shift32 = batch_shift.astype(np.float32)

    def simulate(rows, block_seed):
        block_rng = np.random.default_rng(block_seed)
        logits = activities32[rows] @ loadings32
        logits += base32
        logits += batch_shift32[batch[rows]]
        logits -= logits.max(axis=1, keepdims=True)
        mu = np.exp(logits)
        scale = library_size[rows] / mu.sum(axis=1, dtype=np.float64)
        mu *= scale.astype(np.float32)[:, None]
        counts[rows] = _negative_binomial(block_rng, mu, shape)
        if output == "log_cpm":
            X[rows] = _log_cpm(counts[rows], dtype=np.float32)

    # Each row block has its own child seed, so the output does not depend on
    # the number of threads; numpy releases the GIL while sampling, so
    # threads give a real speed-up.
    block = max(1, _BLOCK_CELLS // n_genes)
    starts = range(0, n_samples, block)
    block_seeds = np.random.SeedSequence(seed).spawn(len(starts))
    tasks = [
        (slice(start, min(start + block, n_samples)), block_seed) for start, block_seed in zip(starts, block_seeds)
    ]
    n_threads = min(len(tasks), cpu_count(), 8)
    if n_threads == 1:
        for task in tasks:
            simulate(*task)
    else:
        with ThreadPoolExecutor(n_threads) as executor:
            # list() re-raises any exception from the workers.
            list(executor.map(lambda task: simulate(*task), tasks))

    if not return_info:
        return X, y
    width = len(str(n_genes - 1))
    # The truth a gene-ranking method should recover: how far each class moves each gene (computed after the draws,
    # so X and y are the same with and without return_info).
    class_effects = class_means @ loadings[class_programs]
    info = Bunch(
        activities=activities,
        loadings=loadings,
        class_programs=class_programs,
        class_means=class_means,
        class_effects=class_effects,
        informative_genes=np.flatnonzero(np.any(class_effects != 0, axis=0)),
        batch=batch.astype(np.int64),
        library_size=counts.sum(axis=1, dtype=np.float64),
        gene_names=np.array([f"GENE{g:0{width}d}" for g in range(n_genes)]),
        base_expression=np.exp(base_log),
        dispersion=gene_dispersion,
    )
    if output == "log_cpm":
        info.counts = counts
    return X, y, info


# Imported last: skssl._compendium reads this module's helpers (the same gene and program draws as make_expression).
from ._compendium import make_compendium  # noqa: E402
