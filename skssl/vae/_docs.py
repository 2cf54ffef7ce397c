"""Parameter descriptions where the VAE differs from the other embedders (filled into its docstring by ``fill_doc``)."""

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
