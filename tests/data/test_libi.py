"""Yacoby, Pan & Doshi-Velez's App. E data sets against their formulas."""

import pytest
import torch

from pyrovae.data.libi import A_GAUSSIAN, A_JTEX, B_JTEX, libi_splits, mobius, mobius_surrogate
from pyrovae.data.registry import make_dataset
from pyrovae.errors import ConfigError, UnknownNameError


def _chol():
    return torch.linalg.cholesky(A_JTEX @ A_JTEX.T + torch.diag(B_JTEX))


def test_linear_and_cubic_jtex_follow_eq3():
    for kind, f in (("linear-jtex", lambda h: h), ("cubic-jtex", lambda h: h.pow(3))):
        s = libi_splits(kind, index=1)
        assert [len(d) for d in s.values()] == [500, 500, 500] and s["train"].condition.shape == (500, 0)
        d = s["train"]
        resid = d.observed - f(d.truth["z"] @ _chol().T)
        assert float(resid.var(0).mean()) == pytest.approx(0.004, rel=0.15)  # 0.01 - 0.006
    y = torch.cat([d.observed for d in libi_splits("linear-jtex").values()]).double()
    torch.testing.assert_close(torch.cov(y.T), A_JTEX @ A_JTEX.T + 0.01 * torch.eye(2, dtype=torch.float64),
                               atol=0.25, rtol=0.1)


def test_gaussian_2to4():
    d = libi_splits("gaussian-2to4")["test"]
    resid = d.observed - d.truth["z"] @ A_GAUSSIAN
    assert resid.shape == (500, 4) and float(resid.std()) == pytest.approx(1e-3, rel=0.1)


def test_mobius_surrogate_and_data():
    z = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    want = [complex(1, 4) / complex(7, 4), complex(2, 3) / complex(8, 3)]  # (z + 1 + 4i) / (z + 7 + 4i)
    torch.testing.assert_close(mobius(z), torch.tensor([[w.real, w.imag] for w in want], dtype=torch.float64))
    net = mobius_surrogate()
    zt = torch.randn(500, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert float((net(zt) - mobius(zt)).abs().max()) < 0.02
    torch.testing.assert_close(mobius_surrogate()(zt), net(zt))  # deterministic
    d = make_dataset("mobius", split="validation", index=2)
    assert float((d.observed - net(d.truth["z"])).std()) == pytest.approx(1e-5**0.5, rel=0.15)


def test_seeding_and_bad_input():
    a, b = libi_splits("linear-jtex", 0), libi_splits("linear-jtex", 1)
    assert not torch.equal(a["train"].observed, b["train"].observed)
    torch.testing.assert_close(libi_splits("linear-jtex", 0)["test"].observed, a["test"].observed)
    with pytest.raises(UnknownNameError):
        libi_splits("nope")
    with pytest.raises(ConfigError):
        make_dataset("linear-jtex", split="dev")


@pytest.mark.parametrize("cube", [False, True])
def test_the_data_layers_jtex_mean_is_the_cholesky_decoder_with_nothing_learned(cube):
    from pyrovae.data.libi import JTExMean
    from pyrovae.models.linear import CholeskyDecoder

    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = CholeskyDecoder(A_JTEX, B_JTEX, 0.1, learn="none", cube=cube)
    torch.testing.assert_close(JTExMean(A_JTEX, B_JTEX, cube)(z), model(z), rtol=0, atol=0)
