"""Synthetic multi-study compendium: an unlabeled pool of many studies and a held-out labeled cohort."""

# License: BSD-3-Clause

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import cpu_count
from numpy.lib.format import open_memmap
from sklearn.utils import Bunch, check_random_state

# The module, not its names: skssl.datasets re-exports make_compendium, so this import can run while datasets is
# still half-initialised; its constants and helpers are looked up at call time.
from . import datasets as _datasets
from ._atomic import atomic_path
from .preprocessing import _log_cpm

__all__ = ["make_compendium"]

# Sequencing depth: log-normal spread across studies and within a study (natural-log scale), as in the first
# compendium benchmark (dev/compendium.py at commit ef50523); make_expression's within-cohort spread is the same 0.35.
_DEPTH_SD_ACROSS = 0.5
_DEPTH_SD_WITHIN = 0.35
# Independent random streams (SeedSequence spawn keys): the gene biology, each cohort study, each pool study. A
# study's stream depends only on the seed and the study's index, so the cohort does not change with the pool's
# size and the first studies of a pool do not change with the number of studies.
_GENES_STREAM, _COHORT_STREAM, _POOL_STREAM = 0, 1, 2
# Cells simulated per row block of a study (bounds the temporaries' memory).
_BLOCK_CELLS = 2_000_000


def _stream(seed, *key):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _gene_biology(rng, n_genes, n_programs, program_size, dispersion):
    """Baseline log-abundances, NB dispersions and program loadings, drawn as make_expression draws them."""
    base_log = _datasets._BASELINE_SD * rng.standard_normal(n_genes)
    base_log[rng.random(n_genes) < _datasets._OFF_FRACTION] += _datasets._OFF_SHIFT
    base_log -= np.log(np.exp(base_log).sum())
    spread = _datasets._DISPERSION_SD
    gene_dispersion = dispersion * np.exp(spread * rng.standard_normal(n_genes) - spread**2 / 2)
    size = max(2, int(round(program_size * n_genes)))
    members = rng.random((n_programs, n_genes)).argsort(axis=1)[:, :size]
    magnitude = rng.gamma(4.0, _datasets._LOADING_MEAN / 4.0, size=(n_programs, size))
    sign = np.where(rng.random((n_programs, size)) < _datasets._POSITIVE_LOADINGS, 1.0, -1.0)
    loadings = np.zeros((n_programs, n_genes))
    np.put_along_axis(loadings, members, sign * magnitude, axis=1)
    return base_log, gene_dispersion, loadings


def _library_sizes(rng, n_samples, mean_library_size):
    """Log-normal depths with mean `mean_library_size`: one study-wide factor times one factor per sample."""
    across = _DEPTH_SD_ACROSS * rng.standard_normal() - _DEPTH_SD_ACROSS**2 / 2
    within = _DEPTH_SD_WITHIN * rng.standard_normal(n_samples) - _DEPTH_SD_WITHIN**2 / 2
    return mean_library_size * np.exp(across + within)


def _counts_of_study(rng, activities, gene_offset, loadings32, library_size, shape, output):
    """Negative-binomial counts (or their log-CPM) of one study's rows, as float32."""
    n_samples, n_genes = len(activities), loadings32.shape[1]
    out = np.empty((n_samples, n_genes), dtype=np.float32)
    activities32 = activities.astype(np.float32)
    block = max(1, _BLOCK_CELLS // n_genes)
    for start in range(0, n_samples, block):
        rows = slice(start, min(start + block, n_samples))
        # The same float32 arithmetic as make_expression: softmax over genes, scaled to the library size.
        logits = activities32[rows] @ loadings32
        logits += gene_offset
        logits -= logits.max(axis=1, keepdims=True)
        mu = np.exp(logits)
        scale = library_size[rows] / mu.sum(axis=1, dtype=np.float64)
        mu *= scale.astype(np.float32)[:, None]
        counts = _datasets._negative_binomial(rng, mu, shape)
        out[rows] = counts if output == "counts" else _log_cpm(counts, dtype=np.float32)
    return out


def _check_choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}.")
    return value


def _check_pool_path(pool_path):
    if pool_path is None:
        return None
    if not isinstance(pool_path, (str, os.PathLike)):
        raise ValueError(f"pool_path must be None or a file path (str or path-like), got {pool_path!r}.")
    pool_path = os.fspath(pool_path)
    folder = os.path.dirname(os.path.abspath(pool_path))
    if not os.path.isdir(folder):
        raise ValueError(f"pool_path={pool_path!r}: its folder {folder!r} does not exist; create it first.")
    if os.path.isdir(pool_path):
        raise ValueError(f"pool_path={pool_path!r} is a folder; give the path of the .npy file to write.")
    return pool_path


def make_compendium(
    n_studies=50,
    samples_per_study=200,
    n_genes=2000,
    *,
    n_cohort_samples=100,
    n_cohort_studies=1,
    n_classes=3,
    n_programs=20,
    shared=1.0,
    program_prevalence=0.5,
    program_size=0.03,
    study_shift=0.3,
    mean_library_size=2e6,
    dispersion=0.2,
    output="log_cpm",
    pool_path=None,
    random_state=None,
    return_info=False,
):
    """Generate an unlabeled multi-study pool and a held-out labeled cohort that share only gene programs.

    The transfer setting: pre-train an embedder once on a large unlabeled
    *pool* of many studies, then use it on a small labeled *cohort* from
    studies that are not in the pool. The two share the genes (baseline
    abundances, dispersions) and a set of latent *gene programs* (sparse
    co-expression modules); they share nothing else by construction. The
    pool has no classes at all. The cohort's label is a deterministic
    function of the activities of its *phenotype programs*, and `shared`
    sets how many of those programs vary in the pool, so how much a pool can
    teach about the phenotype is an explicit parameter (``shared=0``: the
    pool holds no trace of the phenotype programs).

    Parameters
    ----------
    n_studies : int, default=50
        Number of studies in the pool; at least 1.

    samples_per_study : int, default=200
        Samples (rows) per pool study; at least 1.

    n_genes : int, default=2000
        Number of genes (columns); at least 10.

    n_cohort_samples : int, default=100
        Rows of the labeled cohort, split as evenly as possible over the
        cohort studies; at least `n_cohort_studies`.

    n_cohort_studies : int, default=1
        Number of cohort studies (held out: none of them is in the pool);
        at least 1.

    n_classes : int, default=3
        Number of classes of the cohort's label, and of phenotype programs;
        at least 2 and at most `n_programs`.

    n_programs : int, default=20
        Number of latent gene programs; at least `n_classes`.

    shared : float, default=1.0
        Fraction of the phenotype programs that the pool carries, in
        [0, 1]: ``shared * n_classes`` of them, rounded half up. The others
        have activity 0 in every pool sample. Non-phenotype programs are
        always in the pool.

    program_prevalence : float, default=0.5
        Probability, in [0, 1], that a program varies between the samples
        of a pool study; otherwise it is fixed at the study's mean
        activity. The pool's first study varies every program it carries,
        so each of them varies in at least one study.

    program_size : float, default=0.03
        Fraction of the genes in each program, in (0, 1]. Programs are drawn
        independently, so they may share genes.

    study_shift : float, default=0.3
        Standard deviation, at least 0, of each study's gene-wise
        natural-log fold shift (the study or batch effect).

    mean_library_size : float, default=2e6
        Mean total count per sample.

    dispersion : float, default=0.2
        Typical negative-binomial dispersion ``phi`` (variance
        ``mu + phi * mu**2``); gene-wise values scatter log-normally
        around it.

    output : {"log_cpm", "counts"}, default="log_cpm"
        ``"counts"`` returns the raw integer counts (as float32);
        ``"log_cpm"`` returns ``log2(CPM + 1)``, identical to
        ``LogCPM().fit_transform(counts)``.

    pool_path : str, path-like or None, default=None
        None keeps the pool in memory. A path writes the pool to that file
        in ``.npy`` format, study by study (the pool is never whole in
        memory), and ``X_pool`` is then the file opened read-only with
        ``np.load(pool_path, mmap_mode="r")``. The file is written under a
        temporary name and renamed when complete, so an interrupted run
        leaves no partial file at `pool_path`; an existing file is
        replaced.

    random_state : int, RandomState instance or None, default=None
        Determines all random draws. Pass an int for reproducible output.

    return_info : bool, default=False
        If True, the result also holds ``info``, the ground truth.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With fields

        - ``X_pool``: (n_studies * samples_per_study, n_genes) float32
          pool, rows grouped by study (an ``np.memmap`` opened read-only
          when `pool_path` is given);
        - ``study_pool``: (n_studies * samples_per_study,) int64 pool study
          of each row, ``0 .. n_studies - 1``;
        - ``X_cohort``: (n_cohort_samples, n_genes) float32 cohort, rows
          grouped by study;
        - ``y_cohort``: (n_cohort_samples,) int64 labels
          ``0 .. n_classes - 1``;
        - ``study_cohort``: (n_cohort_samples,) int64 cohort study of each
          row, ``0 .. n_cohort_studies - 1`` (a numbering of its own:
          cohort study 0 is not pool study 0);
        - ``gene_names``: (n_genes,) gene identifiers;
        - ``info``: only if `return_info` is True, a
          :class:`~sklearn.utils.Bunch` with

          - ``loadings``: (n_programs, n_genes) sparse gene loadings
            (natural-log fold change per unit of activity);
          - ``phenotype_programs``: indices of the phenotype programs,
            ``0 .. n_classes - 1``;
          - ``shared_programs``: the phenotype programs that the pool
            carries (the first ``round(shared * n_classes)`` of them);
          - ``activities``: (n_cohort_samples, n_programs) program
            activities of the cohort (``y_cohort`` is the argmax of its
            phenotype columns);
          - ``cohort_program_means``: (n_cohort_studies, n_programs) mean
            activities of each cohort study;
          - ``pool_program_means``: (n_studies, n_programs) mean
            activities of each pool study (0 for programs the pool does
            not carry);
          - ``pool_program_varies``: (n_studies, n_programs) bool, whether
            a program varies within a pool study;
          - ``gene_names``, ``base_expression`` (baseline expression
            proportions), ``dispersion`` (gene-wise dispersions): (n_genes,).

    See Also
    --------
    make_expression : A single labeled cohort with class-dependent program means.

    Notes
    -----
    Genes: baseline log-abundances ``b`` (normal, standard deviation 2,
    10 % of the genes 4 lower), dispersions (log-normal around
    `dispersion`, spread 0.5) and program loadings ``W`` (each program a
    random set of ``program_size * n_genes`` genes, magnitudes gamma with
    mean 0.12, 80 % positive) are drawn exactly as in
    :func:`~skssl.make_expression`, once, and shared by every study.

    Phenotype programs are programs ``0 .. n_classes - 1`` (programs are
    exchangeable, so the first ones are as good as a random choice). A
    cohort sample's label is ``argmax_k a_k`` over these programs.

    Pool study ``s`` draws a mean activity ``m_sk ~ N(0, 1)`` per program;
    program ``k`` varies in the study with probability
    `program_prevalence` (always, in study 0), and the activity of sample
    ``i`` is ``a_ik = m_sk + e_ik`` with ``e_ik ~ N(0, 1)`` if it varies,
    ``m_sk`` otherwise. A phenotype program that the pool does not carry
    has ``a_ik = 0`` throughout the pool.

    Cohort study ``c`` draws ``m_ck ~ N(0, 1)`` per non-phenotype program
    and ``m_ck = 0`` for the phenotype programs (so the classes are balanced
    by symmetry in every study; with study means on them, one cohort of 100
    would miss a class or nearly so in about one draw in six); every
    program varies: ``a_ik = m_ck + e_ik``.

    Every study (pool or cohort) has a gene-wise log-fold shift
    ``d_sg ~ N(0, study_shift**2)`` and sequencing depths
    ``L_i = mean_library_size * exp(u_s + v_i)``, with
    ``u_s ~ N(-0.125, 0.5**2)`` per study and ``v_i ~ N(-0.06125, 0.35**2)``
    per sample (mean `mean_library_size`). Counts are gamma-Poisson
    (negative-binomial) draws around
    ``L_i * softmax_g(b_g + sum_k a_ik W_kg + d_sg)``, as in
    make_expression (the Poisson step uses its normal limit above a mean
    of 30).

    Each study is simulated from its own random stream
    (:class:`numpy.random.SeedSequence` spawn keys), so the cohort is the
    same for any pool size, the first studies of a pool are the same for
    any `n_studies`, and changing `shared` leaves every other program's
    activities, the study shifts and the depths as they were. Studies are simulated in threads; the result
    does not depend on their number. See ``docs/compendium.md`` for how
    the defaults were chosen.

    Examples
    --------
    >>> from skssl import make_compendium
    >>> data = make_compendium(n_studies=4, samples_per_study=30, n_genes=300,
    ...                        n_cohort_samples=60, random_state=0)
    >>> data.X_pool.shape, data.X_pool.dtype, data.X_cohort.shape
    ((120, 300), dtype('float32'), (60, 300))
    >>> data.study_pool[:3], sorted(set(data.y_cohort.tolist()))
    (array([0, 0, 0]), [0, 1, 2])
    >>> data = make_compendium(n_studies=4, samples_per_study=30, n_genes=300,
    ...                        n_cohort_samples=60, shared=0.0,
    ...                        random_state=0, return_info=True)
    >>> data.info.phenotype_programs, data.info.shared_programs
    (array([0, 1, 2]), array([], dtype=int64))
    """
    check_int, check_real = _datasets._check_int, _datasets._check_real
    n_studies = check_int(n_studies, "n_studies", 1)
    samples_per_study = check_int(samples_per_study, "samples_per_study", 1)
    n_genes = check_int(n_genes, "n_genes", 10)
    n_cohort_studies = check_int(n_cohort_studies, "n_cohort_studies", 1)
    n_cohort_samples = check_int(n_cohort_samples, "n_cohort_samples", 1)
    if n_cohort_samples < n_cohort_studies:
        raise ValueError(
            f"n_cohort_samples={n_cohort_samples} must be >= n_cohort_studies={n_cohort_studies} so that every "
            "cohort study has a sample."
        )
    n_classes = check_int(n_classes, "n_classes", 2)
    n_programs = check_int(n_programs, "n_programs", 1)
    if n_programs < n_classes:
        raise ValueError(
            f"n_programs={n_programs} must be >= n_classes={n_classes}: each class has its own phenotype program."
        )
    shared = check_real(shared, "shared", low_inclusive=True, high=1.0)
    program_prevalence = check_real(program_prevalence, "program_prevalence", low_inclusive=True, high=1.0)
    program_size = check_real(program_size, "program_size", high=1.0)
    study_shift = check_real(study_shift, "study_shift", low_inclusive=True)
    mean_library_size = check_real(mean_library_size, "mean_library_size")
    dispersion = check_real(dispersion, "dispersion")
    output = _check_choice(output, "output", ("log_cpm", "counts"))
    pool_path = _check_pool_path(pool_path)
    if not isinstance(return_info, (bool, np.bool_)):
        raise ValueError(f"return_info must be True or False, got {return_info!r}.")

    # One integer seed, as make_expression derives it (RandomState instances work too); every stream hangs off it.
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    base_log, gene_dispersion, loadings = _gene_biology(
        _stream(seed, _GENES_STREAM), n_genes, n_programs, program_size, dispersion
    )
    phenotype_programs = np.arange(n_classes)
    # Rounded half up (Python's round() would send 1.5 to 2 but 2.5 to 2).
    n_shared = int(np.floor(shared * n_classes + 0.5))
    shared_programs = phenotype_programs[:n_shared]
    absent_programs = phenotype_programs[n_shared:]
    loadings32 = loadings.astype(np.float32)
    base32 = base_log.astype(np.float32)
    shape = (1.0 / gene_dispersion).astype(np.float32)

    def simulate(rng, activities):
        # Draw order within a study: (its program draws, by the caller), gene shift, depths, counts.
        shift = study_shift * rng.standard_normal(n_genes)
        library_size = _library_sizes(rng, len(activities), mean_library_size)
        gene_offset = base32 + shift.astype(np.float32)
        return _counts_of_study(rng, activities, gene_offset, loadings32, library_size, shape, output)

    def cohort_study(index, n_samples):
        rng = _stream(seed, _COHORT_STREAM, index)
        means = rng.standard_normal(n_programs)
        # Phenotype programs centred in every cohort study: the classes are balanced by symmetry.
        means[phenotype_programs] = 0.0
        activities = means + rng.standard_normal((n_samples, n_programs))
        return means, activities, simulate(rng, activities)

    def pool_study(index):
        rng = _stream(seed, _POOL_STREAM, index)
        means = rng.standard_normal(n_programs)
        # One uniform per program whatever the prevalence, so the streams stay aligned across parameters.
        varies = rng.random(n_programs) < program_prevalence
        if index == 0:
            varies[:] = True  # the first study varies every program, so each varies somewhere in the pool
        noise = rng.standard_normal((samples_per_study, n_programs))
        means[absent_programs] = 0.0
        varies[absent_programs] = False
        activities = means + np.where(varies, noise, 0.0)
        return means, varies, simulate(rng, activities)

    sizes = np.full(n_cohort_studies, n_cohort_samples // n_cohort_studies)
    sizes[: n_cohort_samples % n_cohort_studies] += 1
    cohort = [cohort_study(index, int(size)) for index, size in enumerate(sizes)]
    cohort_means = np.array([means for means, _, _ in cohort])
    cohort_activities = np.concatenate([activities for _, activities, _ in cohort])
    X_cohort = np.concatenate([block for _, _, block in cohort])
    del cohort
    y_cohort = cohort_activities[:, phenotype_programs].argmax(axis=1).astype(np.int64)
    study_cohort = np.repeat(np.arange(n_cohort_studies, dtype=np.int64), sizes)

    n_pool = n_studies * samples_per_study
    pool_means = np.empty((n_studies, n_programs))
    pool_varies = np.empty((n_studies, n_programs), dtype=bool)
    # Studies are simulated a window at a time (one per thread), so at most a window of study blocks is in memory
    # besides the output; numpy releases the GIL while sampling, so threads give a real speed-up.
    n_threads = max(1, min(n_studies, cpu_count(), 8))
    windows = [range(start, min(start + n_threads, n_studies)) for start in range(0, n_studies, n_threads)]

    def pool_blocks(executor):
        for window in windows:
            results = list(executor.map(pool_study, window)) if executor else [pool_study(s) for s in window]
            for study, (means, varies, block) in zip(window, results):
                pool_means[study], pool_varies[study] = means, varies
                yield study, block

    with ThreadPoolExecutor(n_threads) if n_threads > 1 else contextlib.nullcontext() as executor:
        if pool_path is None:
            X_pool = np.empty((n_pool, n_genes), dtype=np.float32)
            for study, block in pool_blocks(executor):
                X_pool[study * samples_per_study : (study + 1) * samples_per_study] = block
        else:
            with atomic_path(pool_path, suffix=".npy") as tmp:
                # open_memmap writes the .npy header and sizes the file; the blocks then go in with plain writes,
                # which keep the file's pages out of this process's resident memory (a mapping would not).
                header = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_pool, n_genes))
                offset = header.offset
                del header
                with open(tmp, "r+b") as handle:
                    handle.seek(offset)
                    for _, block in pool_blocks(executor):
                        handle.write(block.data)  # the block's own buffer: no copy
            X_pool = np.load(pool_path, mmap_mode="r")
    study_pool = np.repeat(np.arange(n_studies, dtype=np.int64), samples_per_study)

    width = len(str(n_genes - 1))
    gene_names = np.array([f"GENE{g:0{width}d}" for g in range(n_genes)])
    data = Bunch(
        X_pool=X_pool,
        study_pool=study_pool,
        X_cohort=X_cohort,
        y_cohort=y_cohort,
        study_cohort=study_cohort,
        gene_names=gene_names,
    )
    if return_info:
        data.info = Bunch(
            loadings=loadings,
            phenotype_programs=phenotype_programs,
            shared_programs=shared_programs,
            activities=cohort_activities,
            cohort_program_means=cohort_means,
            pool_program_means=pool_means,
            pool_program_varies=pool_varies,
            gene_names=gene_names,
            base_expression=np.exp(base_log),
            dispersion=gene_dispersion,
        )
    return data
