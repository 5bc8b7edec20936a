"""SigmaCVAE: networks, the Pyro program's structure, and ``terms`` against closed forms.

The ELBO of the Pyro program itself is checked against hand-written formulas in
``tests/inference/test_objectives.py``.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine

from pyrovae.errors import ConfigError
from pyrovae.models import CalibratedNoise, FixedNoise, LearnedNoise, SigmaCVAE

LOG_2PI = math.log(2 * math.pi)


def make(x_dim=1, y_dim=2, noise=None, seed=0):
    pyro.set_rng_seed(seed)
    return SigmaCVAE(x_dim, y_dim, noise=noise).double()


def data(n=50, x_dim=1, y_dim=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, x_dim, generator=g, dtype=torch.float64), torch.randn(n, y_dim, generator=g, dtype=torch.float64)


def test_default_architecture_is_appendix_f():
    m = SigmaCVAE(1, 2)
    assert m.latent_dim == 2
    linears = [mod for mod in m.decoder if isinstance(mod, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(3, 2), (2, 4), (4, 16), (16, 4), (4, 2)]
    assert all(isinstance(mod, (torch.nn.Linear, torch.nn.Tanh)) for mod in m.decoder)
    enc_linears = [mod for mod in m.encoder.modules() if isinstance(mod, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in enc_linears] == [(3, 16), (16, 8), (8, 4), (4, 2), (2, 2), (2, 2)]
    assert isinstance(m.noise, LearnedNoise) and m.sigma == pytest.approx(1.0)


@pytest.mark.parametrize("args", [(-1, 2, 2), (1, 0, 2), (1, 2, 0)])
def test_bad_dimensions(args):
    with pytest.raises(ConfigError):
        SigmaCVAE(*args)


def test_bad_widths_and_activation():
    with pytest.raises(ConfigError):
        SigmaCVAE(1, 2, encoder_widths=())
    with pytest.raises(ConfigError):
        SigmaCVAE(1, 2, decoder_widths=(4, 0))
    with pytest.raises(ConfigError):
        SigmaCVAE(1, 2, activation="swish-ish")


def test_encode_decode_shapes_and_particle_broadcast():
    m = make()
    x, y = data(10)
    loc, scale = m.encode(x, y)
    assert loc.shape == scale.shape == (10, 2) and torch.all(scale > 0)
    z = torch.randn(4, 10, 2, dtype=torch.float64)
    mu = m.decode(x, z)
    assert mu.shape == (4, 10, 2)
    # each particle decodes exactly as it would on its own
    torch.testing.assert_close(mu[2], m.decode(x, z[2]))


def test_program_structure():
    m = make(noise=FixedNoise(0.3).double())
    x, y = data(12)
    guide_tr = poutine.trace(m.guide).get_trace(x, y)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x, y)
    zg, zm, ys = guide_tr.nodes["z"], model_tr.nodes["z"], model_tr.nodes["y"]
    assert torch.equal(zg["value"], zm["value"])
    assert zg["fn"].event_shape == (2,) and zg["fn"].batch_shape == (12,)
    assert zm["fn"].event_shape == (2,) and zm["fn"].batch_shape == (12,)
    assert ys["is_observed"] and torch.equal(ys["value"], y)
    # prior N(0, I); likelihood N(mu(x, z), sigma^2 I)
    torch.testing.assert_close(zm["fn"].base_dist.loc.expand(12, 2), torch.zeros(12, 2, dtype=torch.float64))
    torch.testing.assert_close(zm["fn"].base_dist.scale.expand(12, 2), torch.ones(12, 2, dtype=torch.float64))
    mu = m.decode(x, zg["value"])
    torch.testing.assert_close(ys["fn"].base_dist.loc, mu)
    torch.testing.assert_close(ys["fn"].base_dist.scale.expand(12, 2), torch.full((12, 2), 0.3, dtype=torch.float64))
    loc, scale = m.encode(x, y)
    torch.testing.assert_close(zg["fn"].base_dist.loc, loc)
    torch.testing.assert_close(zg["fn"].base_dist.scale, scale)


@pytest.mark.parametrize("beta", [1.0, 0.25])
def test_beta_scales_the_latent_site_in_model_and_guide(beta):
    m = make()
    x, y = data(8)
    guide_tr = poutine.trace(m.guide).get_trace(x, y, beta)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x, y, beta)
    assert float(guide_tr.nodes["z"]["scale"]) == beta
    assert float(model_tr.nodes["z"]["scale"]) == beta
    assert float(model_tr.nodes["y"]["scale"]) == 1.0


@pytest.mark.parametrize("noise", [FixedNoise(0.4), CalibratedNoise(0.7), LearnedNoise(1.3)])
def test_terms_match_closed_forms(noise):
    m = make(noise=noise.double())
    x, y = data(40)
    torch.manual_seed(5)
    t = m.terms(x, y)
    sigma, q = m.sigma, y.shape[1]
    # recon is -log N(y | mu, sigma^2 I) for the same mu that gives sq_err
    expected_recon = 0.5 * t["sq_err"] / sigma**2 + q * math.log(sigma) + 0.5 * q * LOG_2PI
    torch.testing.assert_close(t["recon"], expected_recon, rtol=1e-10, atol=1e-10)
    # analytic KL[N(loc, scale^2) || N(0, I)]
    loc, scale = m.encode(x, y)
    kl = 0.5 * (loc**2 + scale**2 - 1 - torch.log(scale**2)).sum(-1)
    torch.testing.assert_close(t["kl"], kl.detach(), rtol=1e-10, atol=1e-12)
    assert torch.all(t["kl"] >= 0) and torch.all(t["sq_err"] >= 0)
    # one reparameterised z per point: z = loc + scale * eps with torch's global RNG
    torch.manual_seed(5)
    with torch.no_grad():
        z = loc + scale * torch.randn_like(loc)
        sq = (y - m.decode(x, z)).pow(2).sum(-1)
    torch.testing.assert_close(t["sq_err"], sq, rtol=1e-10, atol=1e-12)


def test_terms_kl_is_zero_when_posterior_equals_prior():
    m = make()
    x, y = data(6)
    with torch.no_grad():
        for head in (m.encoder.loc, m.encoder.log_var):
            head.weight.zero_()
            head.bias.zero_()
    torch.testing.assert_close(m.terms(x, y)["kl"], torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-14)


def test_sample_and_reconstruct_moments():
    # a decoder whose mean is exactly 0: y ~ N(0, sigma^2 I)
    m = make(noise=FixedNoise(0.5).double())
    with torch.no_grad():
        last = m.decoder[-1]
        last.weight.zero_()
        last.bias.zero_()
    x = torch.zeros(400, 1, dtype=torch.float64)
    draws = m.sample(x, num_samples=10)
    assert draws.shape == (10, 400, 2)
    assert draws.mean().item() == pytest.approx(0.0, abs=0.02)
    assert draws.std().item() == pytest.approx(0.5, rel=0.03)
    assert m.sample(x).shape == (400, 2)
    assert m.reconstruct(x, torch.zeros(400, 2, dtype=torch.float64)).std().item() == pytest.approx(0.5, rel=0.05)


def test_unconditional_model_runs():
    pyro.set_rng_seed(0)
    m = SigmaCVAE(0, 3).double()
    x, y = torch.zeros(20, 0, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    loss = pyro.infer.Trace_ELBO(max_plate_nesting=1).differentiable_loss(m.model, m.guide, x, y)
    assert torch.isfinite(loss)
    assert m.sample(x, num_samples=2).shape == (2, 20, 3)


def test_state_dict_round_trip():
    a, b = make(seed=0), make(seed=1)
    x, y = data(9)
    assert not torch.equal(a.decode(x, torch.zeros(9, 2, dtype=torch.float64)), b.decode(x, torch.zeros(9, 2, dtype=torch.float64)))
    b.load_state_dict(a.state_dict())
    z = torch.randn(9, 2, dtype=torch.float64)
    assert torch.equal(a.decode(x, z), b.decode(x, z))
    for u, v in zip(a.encode(x, y), b.encode(x, y)):
        assert torch.equal(u, v)
    assert a.sigma == b.sigma


# -- plain Pyro: SVI, Predictive and the parameter store --------------------------------------
def _plain_svi(model: SigmaCVAE, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    from pyrovae.optim import adam

    # plain Pyro SVI, as a Pyro user writes it; Pyro's optimiser wrapper around the library's Adam
    svi = pyro.infer.SVI(model.model, model.guide, pyro.optim.PyroOptim(adam, {"lr": 0.01}), pyro.infer.Trace_ELBO())
    return [svi.step(x, y) / x.shape[0] for _ in range(steps)]


def test_plain_pyro_svi_trains_the_model_through_the_parameter_store():
    """What a Pyro user writes first: SVI(model.model, model.guide, ...). The networks are in the
    parameter store under the model's own name, as the module's own tensors, and they learn."""
    from pyrovae.data import two_moon

    data = two_moon(n=300, tau=0.1, seed=0)
    pyro.set_rng_seed(1)
    model = SigmaCVAE(1, 2, noise=LearnedNoise(1.0))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = _plain_svi(model, data.condition, data.observed, 400)
    store = pyro.get_param_store()
    weight = store[f"{model.pyro_name}.encoder$$$trunk.0.0.weight"]
    assert weight is model.encoder.trunk[0][0].weight  # the store holds the module's tensors
    assert {k.split("$$$")[0] for k in store.keys()} == {f"{model.pyro_name}.{part}" for part in
                                                        ("encoder", "decoder", "noise")}
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # every parameter moved
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first - 0.5, (first, last)  # the negative ELBO per point falls
    assert model.sigma < 0.6  # σ learned down from 1 toward the data's scale


def test_two_models_in_one_process_keep_their_own_parameters():
    """A second model trained without clearing the store learns too (no name collision), and a
    copy is a model of its own."""
    import copy

    from pyrovae.data import two_moon

    data = two_moon(n=200, tau=0.1, seed=0)
    first = SigmaCVAE(1, 2)
    _plain_svi(first, data.condition, data.observed, 5)
    second = SigmaCVAE(1, 2)
    kept = {k: v.detach().clone() for k, v in first.state_dict().items()}
    losses = _plain_svi(second, data.condition, data.observed, 200)
    assert losses[-1] < losses[0]
    assert all(torch.equal(kept[k], v) for k, v in first.state_dict().items())  # untouched by the second's SVI
    assert copy.deepcopy(second).pyro_name != second.pyro_name


def test_predictive_draws_from_the_trained_model():
    from pyrovae.data import two_moon

    data = two_moon(n=50, tau=0.1, seed=0)
    model = SigmaCVAE(1, 2, noise=FixedNoise(0.1))
    draws = pyro.infer.Predictive(model.model, guide=model.guide, num_samples=7)(data.condition, data.observed)
    assert draws["z"].shape == (7, 50, 2) and draws["y"].shape == (7, 50, 2)


def test_a_model_with_its_own_likelihood_is_refused_by_the_gaussian_engine():
    """A Student-t σ-CVAE (its own ``model``) trains with plain SVI, but the engine, whose σ
    updates and loss are Gaussian formulas, refuses it by name rather than mis-train it."""
    import pyro.distributions as dist

    from pyrovae.data import two_moon
    from pyrovae.inference.catalog import make_algorithm
    from pyrovae.inference.trainer import Trainer

    class StudentTCVAE(SigmaCVAE):
        def model(self, x, y=None, beta=1.0):
            pyro.module(f"{self.pyro_name}.decoder", self.decoder)
            with pyro.plate("data", x.shape[0], dim=-1):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                mean = self.decode(x, z)
                return pyro.sample("y", dist.StudentT(3.0, mean, 0.1).to_event(1), obs=y)

    data = two_moon(n=40, tau=0.1, seed=0)
    with pytest.raises(ConfigError, match=r"StudentTCVAE\.model is its own program.*pyro\.infer\.SVI"):
        Trainer(StudentTCVAE(1, 2), data, make_algorithm("analytic"))
    assert math.isfinite(_plain_svi(StudentTCVAE(1, 2), data.condition, data.observed, 3)[-1])  # plain Pyro takes it


def test_a_frozen_network_stays_out_of_the_parameter_store_without_warnings():
    """Lagging Inference Networks freeze the decoder during the encoder's steps: plain SVI then trains
    the encoder alone, and Pyro's per-parameter warning about frozen tensors never fires."""
    import warnings

    from pyrovae.data import two_moon

    data = two_moon(n=50, tau=0.1, seed=0)
    model = SigmaCVAE(1, 2)
    model.decoder.requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _plain_svi(model, data.condition, data.observed, 3)
    assert {k.split("$$$")[0] for k in pyro.get_param_store().keys()} == {f"{model.pyro_name}.encoder",
                                                                         f"{model.pyro_name}.noise"}
    assert all(torch.equal(frozen[k], v) for k, v in model.decoder.state_dict().items())
