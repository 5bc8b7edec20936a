"""`pyrovae diagnose` on the library's own failure cases (issue 15, Goals): each names the right failure
and the right remedy, and a healthy run raises no alarm. Small runs (n ≤ 500, a few hundred steps)."""

import math

import pytest

from pyrovae.api import load_run, train
from pyrovae.config import load_config
from pyrovae.diagnosis import diagnose
from pyrovae.runs import save_checkpoint


def _run(root, name, **settings):
    train(load_config(**settings), out=root / name, plots=False)
    return root / name


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("diagnose")


@pytest.fixture(scope="module")
def collapsed(root):
    """Liu & Wang's two-moon σ-CVAE trained by joint SVI: σ grows, the KL goes to 0."""
    return diagnose(_run(root, "joint", algorithm="joint", n=200, max_steps=600), figures=False, write=False)


@pytest.fixture(scope="module")
def healthy(root):
    """The calibrated σ-CVAE on the same data (a wider network and σ₀ = 0.1 so that a few hundred steps fit it).
    Algorithm 1 as published: the robust default would also polish this run at its 500-step cap on the
    importance-weighted bound, and the diagnosis judges such a model against ELBO references (closing note)."""
    return diagnose(_run(root, "calibrated", algorithm="calibrated", calibration="paper", n=200, max_steps=500, sigma0=0.1, lr=0.01,
                         encoder_widths=[32, 32], decoder_widths=[32, 32]), figures=False, write=False)


@pytest.fixture(scope="module")
def sphere(root):
    """Berger & Sebag's hypersphere (D = 3, R = 1) under a VAE with σ fixed at 0.8 > R/√D = 0.577."""
    return diagnose(_run(root, "sphere", model="vae", dataset="sphere", n=200, algorithm="fixed", sigma0=0.8,
                         max_steps=300), figures=False, write=False)


@pytest.fixture(scope="module")
def clusters(root):
    """Yacoby, Pan & Doshi-Velez (2021)'s Clusters VAE initialised at the ground truth (their Sec. 4): the
    decoder regressed on the true f(z), the mean-field encoder fitted by the ELBO to it."""
    from pyrovae.inference.init import init_at_ground_truth

    out = _run(root, "clusters", model="vae", dataset="yacoby-clusters", n=300, latent_dim=1, algorithm="fixed",
               sigma0=math.sqrt(0.2), max_steps=1, encoder_widths=[50, 50], decoder_widths=[50, 50, 50],
               activation="leaky_relu")
    model, data, _ = load_run(out)
    init_at_ground_truth(model, data, decoder_steps=1000, encoder_steps=500, seed=0)
    save_checkpoint(out, {"models": {"0": model.state_dict()}}, {"status": "ground truth"})
    return diagnose(out, figures=False, write=False)


@pytest.fixture(scope="module")
def m2(root):
    """M2 on the discrete semi-circle from the ground truth (App. D), then 10 epochs of the ELBO with the
    factorised guide: the decoder drifts to ignore y (Sec. 7, Fig. 6)."""
    from pyrovae.data.yacoby_m2 import discrete_semicircle, semicircle_f
    from pyrovae.inference.m2_init import init_m2_at_ground_truth
    from pyrovae.inference.m2_training import train_m2

    out = _run(root, "m2", model="m2", dataset="discrete-semicircle", n=500, sigma0=0.1, encoder_widths=[50, 50, 50],
               activation="leaky_relu", lr=0.001, epochs=1)
    model, data, _ = load_run(out)
    truth = lambda z, y: semicircle_f(z, y, "discrete")  # noqa: E731
    init_m2_at_ground_truth(model, data, truth, discrete_semicircle(n=200, seed=7), restarts=1, decoder_steps=1500,
                            encoder_epochs=3, alpha=1.0)
    train_m2(model, data, "elbo", epochs=10, alpha=1.0, lr=1e-3, seed=0)
    save_checkpoint(out, {"models": {"0": model.state_dict()}}, {"status": "ground truth, then the ELBO"})
    return diagnose(out, figures=False, write=False)


def test_collapsed_two_moon_is_a_bad_local_minimum_and_calibration_is_the_remedy(collapsed):
    finding = collapsed.finding("posterior collapse")
    assert finding.verdict == "failure" and finding.value == 0  # no active unit
    assert max(finding.details["kl_per_dimension"]) < 0.01
    assert "bad local minimum" in finding.details["kind"]
    # Dai et al.'s Proposition 1: a learned σ at the collapsed minimum is the data's own spread, σ² = γ̄
    ratio = collapsed.finding("decoder σ vs R/√D").value
    assert 0.9 < ratio < 1.1
    top = collapsed.top_remedy
    assert top.name == "calibrate" and "--algorithm calibrated" in top.command and "--dataset two-moon" in top.command


def test_calibrated_two_moon_raises_no_alarm(healthy):
    assert healthy.verdict == "ok", [(f.check, f.verdict, f.summary) for f in healthy.findings]
    assert healthy.top_remedy is None
    collapse = healthy.finding("posterior collapse")
    assert collapse.value >= 1 and max(collapse.details["kl_per_dimension"]) > 0.5
    optimum = healthy.finding("decoder σ vs its optimum")
    assert optimum.details["sigma"] == pytest.approx(optimum.details["sigma_hat"], rel=0.1)  # Eq. 10 holds


def test_hypersphere_vae_above_berger_sebag_threshold(sphere, root):
    finding = sphere.finding("decoder σ vs R/√D")
    _, data, _ = load_run(root / "sphere")
    y = data.observed.double()
    by_hand = math.sqrt(float((y - y.mean(0)).pow(2).sum(1).mean()) / 3)  # R/√D with R the RMS radius
    assert finding.details["threshold"] == pytest.approx(by_hand, rel=1e-6)
    assert by_hand == pytest.approx(1 / math.sqrt(3), rel=0.05)  # points on the unit sphere of R³
    assert finding.verdict == "failure" and finding.value == pytest.approx(0.8 / by_hand, rel=1e-6)
    collapse = sphere.finding("posterior collapse")
    assert collapse.verdict == "failure" and "variance too large" in collapse.details["kind"]
    assert sphere.top_remedy.name == "calibrate" and "--algorithm calibrated" in sphere.top_remedy.command


def test_clusters_vae_at_the_ground_truth_has_a_posterior_q_cannot_fit(clusters):
    mismatch, gap = clusters.finding("posterior mismatch"), clusters.finding("ELBO vs log-likelihood")
    assert mismatch.verdict == "failure" and mismatch.details["reference"] == "grid"
    assert gap.verdict == "failure"
    # both estimate the same E KL(q ‖ p) (Eq. 3): one on 12 points by the grid, one on 300 by importance sampling
    assert abs(mismatch.value - gap.value) < 3 * (mismatch.details["kl_se"] + gap.details["gap_se"]) + 0.2
    assert clusters.finding("posterior collapse").verdict == "ok"
    assert clusters.top_remedy.name == "iwae" and "--elbo iwae --particles 10" in clusters.top_remedy.command


def test_collapsed_m2_on_the_discrete_semicircle(m2):
    finding = m2.finding("M2 functional collapse")
    assert finding.verdict == "failure" and finding.value < 0.6
    assert finding.details["learned_spread"] / finding.details["true_spread"] == pytest.approx(finding.value)
    assert m2.top_remedy.name == "iwae" and "--model m2" in m2.top_remedy.command


def test_the_remedy_command_runs_as_printed(collapsed, tmp_path):
    """The exact line, with a tiny step cap appended, trains and records the remedy's settings."""
    import json
    import shlex

    from tests.cli.cli_helpers import invoke

    args = shlex.split(collapsed.top_remedy.command)[2:]
    out = tmp_path / "fixed"
    args[args.index("--out") + 1] = str(out)
    result = invoke("train", *args, "--max-steps", "2", "-K", "1", "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "calibrated" and config["n"] == 200 and config["dataset"] == "two-moon"


def test_cholesky_model_is_checked_against_its_exact_posterior(root):
    """Yacoby, Pan & Doshi-Velez (2020)'s Cholesky model: the true posterior is closed-form (App. C), and no
    mean-field q can come closer to it than the best mean-field fit, whose KL is the same for every x (C.3)."""
    from pyrovae.models.linear import posterior_matching_gap

    out = _run(root, "cholesky", model="cholesky", dataset="linear-jtex", n=200, sigma0=0.1, max_steps=100)
    diag = diagnose(out, figures=False, write=False)
    mismatch = diag.finding("posterior mismatch")
    assert mismatch.details["reference"] == "exact"
    model, _, _ = load_run(out)
    decoder = model.decoder.double()
    floor = float(posterior_matching_gap(decoder.weight().detach(), decoder.noise_var().detach()))
    assert floor > 0 and min(mismatch.details["kl"]) >= floor - 1e-6
    assert diag.finding("decoder σ vs its optimum").verdict == "skipped"  # tied noise: no σ to set
