"""The M2 model (Yacoby, Pan & Doshi-Velez 2021, Eq. 4-5, 10-15): the Pyro objective against hand-written sums."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from torch.distributions import Normal

from pyrovae.errors import ConfigError, DataError
from pyrovae.models.m2 import M2, m2_elbo_loss

N, D = 4, 2


def _model(kind: str = "discrete", **kw) -> M2:
    torch.manual_seed(1)
    m = M2(D, kind, widths=(6, 6), sigma=0.5, **kw).double()
    return m


def _data(kind: str = "discrete"):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0]) if kind != "continuous" else torch.randn(N, 1, generator=g, dtype=torch.float64)
    return x, y


def _loss_and_guide_trace(m, *args):
    traces = []

    def guide(*a):
        with poutine.trace() as tr:
            m.guide(*a)
        traces.append(tr.trace)

    from pyro.infer import Trace_ELBO, TraceEnum_ELBO

    elbo = (TraceEnum_ELBO if len(args) == 1 and m.y_kind == "discrete" else Trace_ELBO)(max_plate_nesting=1)
    loss = elbo.differentiable_loss(m.model, guide, *args)
    return loss, traces[0]


def _log_normal(v, loc, scale):
    return Normal(loc, scale).log_prob(v).sum(-1)


@pytest.mark.parametrize("z_guide", ["factorised", "conditional"])
def test_enumerated_unlabelled_elbo_equals_hand_sum_over_y(z_guide):
    m, (x, _) = _model(z_guide=z_guide), _data()
    loss, tr = _loss_and_guide_trace(m, x)
    z = tr.nodes["z"]["value"]
    # conditional: one z per enumerated value of y (K, n, d); factorised (Eq. 13): one z ~ q(z|x) for all y
    assert z.shape == ((2, N, 1) if z_guide == "conditional" else (N, 1))
    log_q_y = torch.log_softmax(m.y_logits(x), -1)
    total = 0.0
    for k in range(2):
        yk = torch.full((N,), k)
        zk = z[k] if z_guide == "conditional" else z
        loc, scale = m.encode_z(x, yk) if z_guide == "conditional" else m.z_encoder_x(x)
        term = (_log_normal(x, m.decode(zk, yk), m.sigma) + math.log(0.5) + _log_normal(zk, 0.0, 1.0)
                - _log_normal(zk, loc, scale) - log_q_y[:, k])
        total = total + (log_q_y[:, k].exp() * term).sum()
    torch.testing.assert_close(loss, -total, rtol=1e-10, atol=1e-10)


def test_factorised_iwae_bound_equals_hand_formula():
    """Eq. 15 with q(y|x) q(z|x) and the expectation over y exact: log (1/S) Σ_s Σ_y p(x, z_s, y) / q(z_s|x)."""
    m, (x, _) = _model(), _data()
    S = 5
    torch.manual_seed(3)
    bound = m.iwae_bound(x, None, S)
    torch.manual_seed(3)
    eps = torch.randn(S, N, 1, dtype=x.dtype)
    loc, scale = m.z_encoder_x(x)
    z = loc + scale * eps
    log_w = torch.stack([_log_normal(x, m.decode(z, torch.full((N,), k)), m.sigma) + math.log(0.5)
                         + _log_normal(z, 0.0, 1.0) - _log_normal(z, loc, scale) for k in range(2)], 1)  # (S, K, n)
    hand = torch.logsumexp(log_w.reshape(-1, N), 0) - math.log(S)
    torch.testing.assert_close(bound, hand, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["discrete", "relaxed", "continuous"])
def test_labelled_objective_equals_hand_formula(kind):
    m, (x, y) = _model(kind), _data(kind)
    gamma, alpha = 0.3, 2.5
    loss, tr = _loss_and_guide_trace(m, x, y, gamma, alpha)
    z = tr.nodes["z"]["value"]
    loc, scale = m.encode_z(x, y)
    if kind == "continuous":
        log_py, log_qy = _log_normal(y, 0.0, 1.0), m.q_y(x).log_prob(y)
    else:
        log_py, log_qy = torch.full((N,), math.log(0.5), dtype=x.dtype), torch.log_softmax(m.y_logits(x), -1)[range(N), y]
    lab = _log_normal(x, m.decode(z, y), m.sigma) + log_py + _log_normal(z, 0.0, 1.0) - _log_normal(z, loc, scale)
    torch.testing.assert_close(loss, -(gamma * lab.sum() + alpha * log_qy.sum()), rtol=1e-10, atol=1e-10)


def test_continuous_unlabelled_elbo_equals_hand_formula():
    m, (x, _) = _model("continuous"), _data("continuous")
    loss, tr = _loss_and_guide_trace(m, x)
    y, z = tr.nodes["y"]["value"], tr.nodes["z"]["value"]
    loc, scale = m.z_encoder_x(x)  # factorised guide (Eq. 13): q(z | x)
    elbo = (_log_normal(x, m.decode(z, y), m.sigma) + _log_normal(y, 0.0, 1.0) + _log_normal(z, 0.0, 1.0)
            - _log_normal(z, loc, scale) - m.q_y(x).log_prob(y))
    torch.testing.assert_close(loss, -elbo.sum(), rtol=1e-10, atol=1e-10)


def _mc_loss(m, x, particles):
    return m2_elbo_loss(m, x, particles=particles).item()


def test_relaxed_objective_approaches_enumerated_as_temperature_falls():
    torch.manual_seed(0)
    m, (x, _) = _model(), _data()
    enum = _mc_loss(m, x, 4000)
    gaps = {}
    for t in (2.2, 0.02):
        r = _model("relaxed", temperature=t)
        r.load_state_dict(m.state_dict())
        gaps[t] = abs(_mc_loss(r, x, 4000) - enum)
    assert gaps[0.02] < 0.05 * abs(enum) and gaps[0.02] < gaps[2.2] / 3, gaps


@pytest.mark.parametrize("z_guide", ["factorised", "conditional"])
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_iwae_bound_above_elbo_and_tightens_with_S(kind, z_guide):
    torch.manual_seed(0)
    m, (x, _) = _model(kind, z_guide=z_guide), _data(kind)
    elbo = -_mc_loss(m, x, 2000)  # TraceEnum_ELBO refuses to run under no_grad
    with torch.no_grad():
        means = [m.iwae_bound(x.expand(reps, N, D).reshape(-1, D), None, s).sum().item() / reps
                 for s, reps in ((1, 2000), (4, 1000), (64, 200))]
    if kind == "continuous":  # S = 1 is the same estimator as the ELBO
        assert abs(means[0] - elbo) < 0.05 * abs(elbo)
    else:  # the exact sum over y already beats the enumerated ELBO (Jensen over y)
        assert means[0] > elbo
    assert means[0] < means[1] < means[2], (elbo, means)


def test_labelled_iwae_with_one_particle_is_the_elbo_and_tightens():
    torch.manual_seed(0)
    m, (x, y) = _model(), _data()
    elbo = -m2_elbo_loss(m, x, y, particles=2000).item()
    with torch.no_grad():
        one = sum(m.iwae_bound(x, y, 1).sum().item() for _ in range(400)) / 400
        many = m.iwae_bound(x, y, 500).sum().item()
    assert abs(one - elbo) < 0.03 * abs(elbo) and many > elbo


@pytest.mark.parametrize("z_guide", ["factorised", "conditional"])
@pytest.mark.parametrize("kind", ["discrete", "relaxed", "continuous"])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_gradients_reach_every_parameter(kind, objective, z_guide):
    m, (x, y) = _model(kind, z_guide=z_guide), _data(kind)
    if objective == "elbo":
        loss = m2_elbo_loss(m, x) + m2_elbo_loss(m, x, y, 0.5, 1.0)
    else:
        loss = m.iwae_loss(x, particles=3) + m.iwae_loss(x, y, 0.5, 1.0, particles=3)
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing


def test_alpha_zero_and_gamma_scale():
    m, (x, y) = _model(), _data()
    pyro_seed = 5
    torch.manual_seed(pyro_seed)
    a = m2_elbo_loss(m, x, y, 1.0, 0.0)
    torch.manual_seed(pyro_seed)
    b = m2_elbo_loss(m, x, y, 2.0, 0.0)
    torch.testing.assert_close(b, 2 * a)


def test_sample_and_bad_input():
    m, (x, _) = _model(), _data()
    xs, ys = m.sample(7, y=1)
    assert xs.shape == (7, D) and (ys == 1).all()
    with pytest.raises(DataError):
        m2_elbo_loss(m, x, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(DataError):
        m2_elbo_loss(m, x[:, :1])
    with pytest.raises(ConfigError):
        M2(2, "ordinal")
    with pytest.raises(ConfigError):
        M2(2, sigma=0.0)
    with pytest.raises(ConfigError):
        M2(2, z_guide="mixture")
    with pytest.raises(ConfigError):
        m.iwae_bound(x, particles=0)
    assert F.one_hot(torch.tensor([1]), 2).shape == (1, 2)


def test_relaxed_iwae_with_one_particle_is_the_relaxed_elbo():
    """Eq. 15 as printed, y_s from the relaxed q(y|x): with S = 1 its expectation is the relaxed
    variant's unlabelled ELBO (the same densities, one joint draw of y and z)."""
    torch.manual_seed(0)
    m, (x, _) = _model("relaxed"), _data("relaxed")
    elbo = -m2_elbo_loss(m, x, particles=4000).item()
    with torch.no_grad():
        one = torch.stack([m.iwae_bound(x, None, 1).sum() for _ in range(4000)]).mean().item()
        many = m.iwae_bound(x, None, 500).sum().item()
    assert abs(one - elbo) < 0.02 * abs(elbo) and many > elbo + 0.05, (one, elbo, many)


def test_only_the_relaxed_iwae_trains_q_y_through_the_unlabelled_bound():
    """The exact sum over y leaves q(y|x) out of the unlabelled bound; sampling y_s (Eq. 15) does not."""
    x, _ = _data()
    for kind, trained in (("discrete", False), ("relaxed", True)):
        m = _model(kind)
        m.iwae_bound(x, None, 5).sum().backward()
        grads = [p.grad for p in m.y_encoder.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == trained, kind


def _log_concrete(y_soft, probs, temperature):
    """Maddison et al. (2017), Eq. of the Concrete density, written out:
    log[(K-1)! λ^(K-1) Π_k α_k y_k^(-λ-1) / (Σ_i α_i y_i^(-λ))^K]."""
    K, lam = y_soft.shape[-1], temperature
    return (math.lgamma(K) + (K - 1) * math.log(lam) + (probs.log() - (lam + 1) * y_soft.log()).sum(-1)
            - K * torch.log((probs * y_soft.pow(-lam)).sum(-1)))


@pytest.mark.parametrize("straight_through", [False, True])
@pytest.mark.parametrize("temperature", [2.2, 0.7])
def test_relaxed_unlabelled_elbo_equals_hand_computed_concrete_value(straight_through, temperature):
    """The relaxed (Gumbel-softmax) M2 of App. D at a fixed temperature: the unlabelled ELBO of one draw
    against Eq. 13 with Concrete densities written out by hand, q(y|x) and p(y) at the draw's relaxed value;
    the decoder reads the hard one-hot under straight-through and the relaxed value otherwise."""
    m = _model("relaxed", temperature=temperature, relaxed_density="concrete", straight_through=straight_through)
    x, _ = _data()
    torch.manual_seed(5)
    loss, tr = _loss_and_guide_trace(m, x)
    y = tr.nodes["y"]["value"]
    soft = getattr(y, "_unquantize", y)
    if straight_through:
        assert torch.equal(y, F.one_hot(soft.argmax(-1), 2).to(y.dtype))  # the networks see a hard label
    else:
        assert (y > 0).all() and (y < 1).all()
    z = tr.nodes["z"]["value"]
    loc, scale = m.z_encoder_x(x)
    q_probs = torch.softmax(m.y_logits(x), -1)
    hand = (_log_normal(x, m.decode(z, y), m.sigma) + _log_concrete(soft, m.prior_probs, temperature)
            + _log_normal(z, 0.0, 1.0) - _log_normal(z, loc, scale) - _log_concrete(soft, q_probs, temperature))
    torch.testing.assert_close(loss, -hand.sum(), rtol=1e-9, atol=1e-9)


def test_straight_through_relaxed_iwae_equals_hand_formula():
    """Eq. 15 as printed at T = 2.2: y_s ~ relaxed q(y|x) (the decoder reads its hard one-hot), z_s ~ q(z|x),
    weight p(x|z_s,y_s) p(y_s) p(z_s) / (q(y_s|x) q(z_s|x)) with Concrete densities at the relaxed y_s."""
    import pyro.distributions as pdist

    m = _model("relaxed", relaxed_density="concrete", straight_through=True)
    x, _ = _data()
    S = 4
    torch.manual_seed(7)
    bound = m.iwae_bound(x, None, S)
    torch.manual_seed(7)  # the same draws: the relaxed sample first, then z's noise
    soft = pdist.RelaxedOneHotCategorical(torch.tensor(2.2, dtype=x.dtype), logits=m.y_logits(x)).rsample((S,))
    hard = F.one_hot(soft.argmax(-1), 2).to(x.dtype)
    loc, scale = m.z_encoder_x(x)
    z = loc + scale * torch.randn(S, N, 1, dtype=x.dtype)
    q_probs = torch.softmax(m.y_logits(x), -1)
    log_w = (_log_normal(x, m.decode(z, hard), m.sigma) + _log_concrete(soft, m.prior_probs, 2.2)
             + _log_normal(z, 0.0, 1.0) - _log_concrete(soft, q_probs, 2.2) - _log_normal(z, loc, scale))
    torch.testing.assert_close(bound, torch.logsumexp(log_w, 0) - math.log(S), rtol=1e-6, atol=1e-6)


def test_straight_through_trains_q_y_and_refuses_a_non_boolean():
    m = _model("relaxed", relaxed_density="concrete", straight_through=True)
    x, _ = _data()
    m2_elbo_loss(m, x).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.y_encoder.parameters())
    with pytest.raises(ConfigError, match="straight_through"):
        M2(D, "relaxed", straight_through="yes")


def test_plain_pyro_svi_trains_m2_through_the_parameter_store():
    """SVI(m.model, m.guide, ...) with TraceEnum_ELBO on unlabelled points: every network is in the
    parameter store under the model's own name (the module's own tensors), and the loss falls."""
    import pyro

    from pyrovae.data.yacoby_m2 import discrete_semicircle

    pyro.clear_param_store()
    data = discrete_semicircle(n=200, seed=0)
    m = M2(2, "discrete", widths=(16, 16), sigma=0.1)
    x = data.observed.float()
    from pyrovae.optim import adam

    # plain Pyro SVI, as a Pyro user writes it; Pyro's optimiser wrapper around the library's Adam
    svi = pyro.infer.SVI(m.model, m.guide, pyro.optim.PyroOptim(adam, {"lr": 0.01}),
                         pyro.infer.TraceEnum_ELBO(max_plate_nesting=1))
    losses = [svi.step(x) / len(x) for _ in range(150)]
    store = pyro.get_param_store()
    assert {k.split("$$$")[0] for k in store.keys()} == {f"{m.pyro_name}.{p}" for p in
                                                        ("decoder", "y_encoder", "z_encoder", "z_encoder_x")}
    assert store[f"{m.pyro_name}.decoder$$$0.weight"] is m.decoder[0].weight
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 1.0
