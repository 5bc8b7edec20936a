"""The generating networks of Yacoby, Pan & Doshi-Velez (2021), App. G."""

import torch

from pyrovae.papers.yacoby_2021_failure_modes.surrogate_networks import decoder_state, network_mean, truth_network
from pyrovae.data.yacoby_unsupervised import A_EMBED, circle_f, yacoby_splits
from pyrovae.models.nets import MLP


def test_truth_network_fits_f_and_is_deterministic():
    a = truth_network("circle", widths=(20, 20), steps=400, n=500)
    b = truth_network("circle", widths=(20, 20), steps=400, n=500)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    z = torch.linspace(-2, 2, 101)[:, None]
    err = (network_mean(a)(z) - circle_f(z)).pow(2).mean()
    assert a.mse < 0.05 and err < 0.1  # a rough circle after 400 steps; the data are defined by the network


def test_splits_from_the_network_and_the_folded_embedding():
    t = truth_network("figure8", widths=(10,), steps=50, n=100)
    f = network_mean(t)
    d = yacoby_splits("figure8", sizes={"train": 50, "validation": 10, "test": 10}, mean=f)["train"]
    assert d.params["mean"] == "network"
    assert torch.allclose(d.truth["fz"], f(d.truth["z"]), atol=1e-6)
    e = yacoby_splits("figure8", embed=True, sizes={"train": 50, "validation": 10, "test": 10}, mean=f)["train"]
    assert torch.allclose(e.truth["fz"].double(), f(e.truth["z"]).double() @ A_EMBED, atol=1e-5)
    # the decoder that loads the folded state reproduces f(z) A exactly (up to float rounding)
    dec = MLP(1, [10], 5, "leaky_relu")
    dec.load_state_dict(decoder_state(t, embed=True))
    with torch.no_grad():
        assert torch.allclose(dec(e.truth["z"]), e.truth["fz"], atol=1e-5)
