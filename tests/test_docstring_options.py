"""Every public estimator's docstring agrees with its code: each validated parameter is documented, the string
options written in ``{...}`` are those ``_parameter_constraints`` accepts, and ``default=`` is the ``__init__``
default."""

import ast
import inspect
import re

import pytest

import skssl
from skssl._compat import StrOptions

ESTIMATORS = [
    skssl.ContrastiveEmbedder,
    skssl.MaskedAutoencoder,
    skssl.VAEEmbedder,
    skssl.SSLClassifier,
    skssl.SSLRegressor,
    skssl.SemiSupervisedEnsembleClassifier,
    skssl.SemiSupervisedEnsembleRegressor,
    skssl.LogCPM,
    skssl.HighlyVariableGenes,
    skssl.GeneAligner,
]


def documented(cls, name):
    match = re.search(rf"^\s*{name} : (.*)$", cls.__doc__, re.M)
    assert match, f"{cls.__name__}: parameter {name!r} is validated but not documented"
    return match.group(1)


def string_options(constraints):
    return {option for c in constraints if isinstance(c, StrOptions) for option in c.options}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_documented_options_and_defaults_match_the_code(cls):
    defaults = inspect.signature(cls.__init__).parameters
    for name, constraints in cls._parameter_constraints.items():
        line = documented(cls, name)
        braces = re.search(r"\{([^}]*)\}", line)
        if braces:
            written = set(re.findall(r'"([^"]+)"', braces.group(1)))
            accepted = string_options(constraints)
            # A type list such as {array-like, sparse matrix} has no quoted option; quoted ones must all be accepted,
            # and every accepted option must be written down.
            if written:
                assert written == accepted, f"{cls.__name__}.{name}: documented {written}, accepted {accepted}"
        default = re.search(r"default=(.*)$", line)
        if default and name in defaults:
            text = default.group(1).strip()
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue  # a described default ("None: the estimators' defaults"), checked by reading
            assert value == defaults[name].default, f"{cls.__name__}.{name}: documented default={text}"


def test_a_wrong_documented_option_is_caught(monkeypatch):
    # The check itself can fail: a docstring that lists an option the code refuses.
    doc = skssl.HighlyVariableGenes.__doc__.replace(
        '{"variance", "dispersion"}', '{"variance", "dispersion", "seurat"}'
    )
    monkeypatch.setattr(skssl.HighlyVariableGenes, "__doc__", doc)
    with pytest.raises(AssertionError, match="flavor"):
        test_documented_options_and_defaults_match_the_code(skssl.HighlyVariableGenes)
