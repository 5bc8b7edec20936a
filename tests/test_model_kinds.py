"""The model-kind registry: one entry per ``--model`` name holds its defaults and its builder."""

import pytest
import torch

from pyrovae.config import MODELS, load_config
from pyrovae.data.conditional import two_moon
from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, UnknownNameError
from pyrovae.model_kinds import MODEL_KINDS
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.m2 import M2


def test_the_config_knows_exactly_the_registered_kinds_and_takes_their_defaults():
    assert MODELS == tuple(MODEL_KINDS) == ("cvae", "vae", "m2", "linear", "cholesky")
    for name, kind in MODEL_KINDS.items():
        cfg = load_config(model=name, dataset="discrete-semicircle" if kind.labelled else "two-moon")
        assert cfg.algorithm == kind.algorithm
        assert cfg.latent_dim == kind.latent_dim


def test_an_unknown_kind_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown model 'cvea'; known: cvae, vae, m2, linear, cholesky"):
        MODEL_KINDS["cvea"]


def test_each_builder_sizes_its_model_from_the_data():
    data = two_moon(n=20, tau=0.1, seed=0)
    cvae = MODEL_KINDS["cvae"].build(load_config(), data, None)
    assert isinstance(cvae, SigmaCVAE) and (cvae.condition_dim, cvae.observed_dim, cvae.latent_dim) == (1, 2, 2)
    assert type(cvae.noise).__name__ == "CalibratedNoise"  # the calibrated algorithm's own observation model
    one_column = SemiSupervisedDataset("s", torch.zeros(6, 0), torch.randn(6, 1), labels=torch.tensor([0.0, 1, 0, 1, 0, 1]),
                                       labelled=torch.tensor([True, True, False, False, False, False]))
    linear = MODEL_KINDS["linear"].build(load_config(model="linear"), one_column, None)
    assert linear.condition_dim == 0 and linear.latent_dim == 1
    cholesky = MODEL_KINDS["cholesky"].build(load_config(model="cholesky"), two_moon(n=20, seed=0), None)
    assert cholesky.latent_dim == 2  # as many latents as observed columns
    m2 = MODEL_KINDS["m2"].build(load_config(model="m2", dataset="discrete-semicircle"), one_column, None)
    assert isinstance(m2, M2) and (m2.observed_dim, m2.label_dim, m2.num_classes) == (1, 2, 2)


def test_the_builders_refuse_data_of_the_wrong_shape():
    with pytest.raises(ConfigError, match="one output"):
        MODEL_KINDS["linear"].build(load_config(model="linear"), two_moon(n=20, seed=0), None)
    with pytest.raises(ConfigError, match="semi-supervised"):
        MODEL_KINDS["m2"].build(load_config(model="m2", dataset="discrete-semicircle"), two_moon(n=20, seed=0), None)


def test_only_the_linear_kinds_have_exact_posteriors_and_only_the_cvae_reads_a_condition():
    assert [k for k, v in MODEL_KINDS.items() if v.linear] == ["linear", "cholesky"]
    assert [k for k, v in MODEL_KINDS.items() if v.conditional] == ["cvae"]
    assert [k for k, v in MODEL_KINDS.items() if v.labelled] == ["m2"]
