"""Readers and writers for gene-expression matrices.

Every reader returns an :class:`ExpressionData`: a float32 matrix laid out
``(n_samples, n_genes)`` together with gene and sample identifiers and
per-sample metadata. The text readers only need the standard library and
numpy; files ending in ``.gz`` are decompressed on the fly. Malformed input
(including an ambiguous header, mixed separators, values beyond float32 and
undecodable or truncated files) raises a :class:`ValueError` that names the
file and line. Metadata columns are text, as written, unless a reader's
``numeric_metadata`` asks for numbers.
"""

# License: BSD-3-Clause

# One private module per format: _table (CSV/TSV), _gct, _geo (GEO series matrix), _archs4 (ARCHS4 HDF5) and
# _h5ad (AnnData); _container holds ExpressionData and _parse the parsing helpers the text formats share.

from ._archs4 import read_archs4
from ._container import ExpressionData
from ._gct import read_gct, write_gct
from ._geo import read_geo_series_matrix
from ._h5ad import read_h5ad, write_embedding
from ._table import read_table, write_table

__all__ = [
    "ExpressionData",
    "read_archs4",
    "read_gct",
    "read_geo_series_matrix",
    "read_h5ad",
    "read_table",
    "write_embedding",
    "write_gct",
    "write_table",
]
