"""skssl: self-supervised representation learning for gene-expression data, as scikit-learn estimators."""

from .contrastive import ContrastiveEmbedder
from .masked import MaskedAutoencoder
from .vae import VAEEmbedder

__version__ = "0.1.0"

__all__ = [
    "ContrastiveEmbedder",
    "MaskedAutoencoder",
    "VAEEmbedder",
    "__version__",
]
