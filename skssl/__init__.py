"""skssl: self-supervised representation learning for gene-expression data, as scikit-learn estimators.

Embedders (transformers): :class:`ContrastiveEmbedder` (SCARF / BYOL), :class:`MaskedAutoencoder` (VIME),
:class:`VAEEmbedder` (Gaussian / negative binomial; multi-omics ``views``). Semi-supervised predictors:
:class:`SSLClassifier`, :class:`SSLRegressor` (the ensemble by default, or pre-train then fine-tune), and the ensemble
alone, :class:`SemiSupervisedEnsembleClassifier`, :class:`SemiSupervisedEnsembleRegressor`. Preprocessing:
:class:`LogCPM`, :class:`HighlyVariableGenes`, :class:`GeneAligner`. Data: :func:`make_expression` and the readers
of :mod:`skssl.io`. The label-efficiency benchmark lives in :mod:`skssl.benchmark`.
"""

from .contrastive import ContrastiveEmbedder
from .datasets import make_compendium, make_expression
from .io import ExpressionData, read_archs4, read_gct, read_geo_series_matrix, read_table
from .masked import MaskedAutoencoder
from .multiview import assemble_views
from .persistence import load_model, read_model_info, save_model
from .preprocessing import GeneAligner, HighlyVariableGenes, LogCPM
from .semi_supervised import SemiSupervisedEnsembleClassifier, SemiSupervisedEnsembleRegressor
from .supervised import SSLClassifier, SSLRegressor
from .vae import VAEEmbedder

__version__ = "0.3.0"

__all__ = [
    "ContrastiveEmbedder",
    "ExpressionData",
    "GeneAligner",
    "HighlyVariableGenes",
    "LogCPM",
    "MaskedAutoencoder",
    "SSLClassifier",
    "SSLRegressor",
    "SemiSupervisedEnsembleClassifier",
    "SemiSupervisedEnsembleRegressor",
    "VAEEmbedder",
    "assemble_views",
    "load_model",
    "make_compendium",
    "make_expression",
    "read_archs4",
    "read_gct",
    "read_geo_series_matrix",
    "read_model_info",
    "read_table",
    "save_model",
    "__version__",
]
