r"""Yacoby, Pan & Doshi-Velez (2020) Figure 1 (``libi-figure1``). Panels A/B: over a grid of diagonal ``B`` in
:math:`[0, \sigma_\varepsilon^2)^2` with ``A`` fixed, :math:`\min_\phi L(\theta, \phi)` (the best mean-field
posterior-matching gap, the MLE term being 0 for every B) and :math:`I(X; Z)` (Eq. 22), in closed form, checked by
SVI (a linear mean-field encoder fitted by the ELBO with the decoder fixed) at a few grid points. Panels C-F: with
``B`` fixed and ``A`` learned, the minimiser of :math:`L(\theta, \phi^*)` (closed form, LBFGS), the true and
learned data distributions and aggregated posteriors; :math:`L(\theta_{GT}, \phi_{GT}) = 0.532` and
:math:`L(\theta^*, \phi^*) = 0.196` in the paper. The closed forms are :mod:`pyrovae.models.linear` and
:mod:`pyrovae.posterior.exact`.
"""

from __future__ import annotations

import math
import time

import pyro
import torch

from pyrovae.data.base import Dataset
from pyrovae.experiments.registry import ExperimentOptions, register
from pyrovae.experiments.results import ExperimentReport, ResultTable
from pyrovae.inference.algorithms import PlainSVI
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.models.linear import (
    CholeskyDecoder, cholesky_mutual_information, linear_vae, posterior_matching_gap, vae_objective_gap,
)
from pyrovae.optim import Minimiser
from pyrovae.posterior.exact import LinearGaussian, gaussian_kl


__all__ = ["A_GT", "B_GT", "SIGMA_EPS", "landscape", "learn_a", "svi_gap", "figure1"]

A_GT = torch.tensor([[0.75, 0.25], [1.5, -1.0]], dtype=torch.float64)
B_GT = torch.tensor([0.006, 0.006], dtype=torch.float64)
SIGMA_EPS = 0.1  # sigma_eps^2 = 0.01
PAPER_L_GT, PAPER_L_STAR = 0.532, 0.196


def landscape(resolution: int = 40, a: torch.Tensor = A_GT, sigma_eps: float = SIGMA_EPS):
    """``(b_values, gap (R, R), mi (R, R))`` with ``gap[i, j]`` at ``B = diag(b[i], b[j])``;
    ``b`` spans the open interval ``(0, σ²)`` at cell centres."""
    s2 = sigma_eps**2
    b = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution * s2
    gap = torch.empty(resolution, resolution, dtype=torch.float64)
    mi = torch.empty_like(gap)
    for i in range(resolution):
        for j in range(resolution):
            bd = torch.stack([b[i], b[j]])
            dec = CholeskyDecoder(a, bd, sigma_eps, learn="none")
            gap[i, j] = posterior_matching_gap(dec.weight(), dec.noise_var())
            mi[i, j] = cholesky_mutual_information(a, bd, sigma_eps)
    return b, gap, mi


def learn_a(a0: torch.Tensor = A_GT, b_diag: torch.Tensor = B_GT, sigma_eps: float = SIGMA_EPS,
            data_cov: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    r""":math:`\operatorname{argmin}_A L(A, \phi^*)` by LBFGS from ``a0``; returns ``(A*, L*)``."""
    if data_cov is None:
        data_cov = A_GT @ A_GT.T + sigma_eps**2 * torch.eye(2, dtype=torch.float64)
    dec = CholeskyDecoder(a0, b_diag, sigma_eps, learn="A")
    minimiser = Minimiser.lbfgs(dec.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)
    minimiser.run(lambda: vae_objective_gap(dec.weight(), dec.noise_var(), data_cov), 5)
    with torch.no_grad():
        value = float(vae_objective_gap(dec.weight(), dec.noise_var(), data_cov))
    return dec.a.detach().clone(), value


def svi_gap(b_diag: torch.Tensor, a: torch.Tensor = A_GT, sigma_eps: float = SIGMA_EPS, n: int = 200,
            steps: int = 800, lr: float = 0.05, seed: int = 0) -> float:
    r"""Fit a linear mean-field encoder by the ELBO (the engine, encoder only, ``Trace_ELBO``) with the decoder
    fixed at ``B = diag(b_diag)`` (the encoder's log-variance starts at log σ_ε², a data-free guess of the
    posterior's scale); return :math:`\frac1N\sum_n KL[q_\phi(z|x_n) \| p(z|x_n)]` (exact)."""
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    dec = CholeskyDecoder(a, b_diag, sigma_eps, learn="none")
    lg = LinearGaussian.from_decoder(dec)
    _, x = lg.sample(n, torch.Generator().manual_seed(seed))
    model = linear_vae(dec).float()  # the engine trains on the data set's float32 tensors
    with torch.no_grad():
        model.encoder.log_var.bias.fill_(2.0 * math.log(sigma_eps))
    empty = torch.zeros(n, 0)
    x = x.float()
    settings = TrainSettings(K=steps, lr=lr, max_steps=steps, tol=0.0, trainable=("encoder",), checkpoint_every=10**9)
    with pyro.validation_enabled(False):
        Trainer(model, Dataset("svi-gap", empty, x), PlainSVI(), settings, seeds=[seed]).run()
    with torch.no_grad():
        loc, scale = (t.double() for t in model.encode(empty, x))
        mean, cov = lg.posterior(x.double())
        return float(gaussian_kl(loc, torch.diag_embed(scale**2), mean, cov).mean())


def _figure(path, b, gap, mi, a_star, out_samples: int = 1000, seed: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = torch.Generator().manual_seed(seed)
    true = LinearGaussian.from_decoder(CholeskyDecoder(A_GT, B_GT, SIGMA_EPS, learn="none"))
    learned = LinearGaussian.from_decoder(CholeskyDecoder(a_star, B_GT, SIGMA_EPS, learn="none"))
    _, x_true = true.sample(out_samples, gen)
    _, x_learned = learned.sample(out_samples, gen)
    # aggregated posteriors over the true data: E_x p_GT(z|x) and E_x q*(z|x) (best mean-field of the learned model)
    m_true, c_true = true.posterior(x_true)
    z_true = m_true + (torch.linalg.cholesky(c_true) @ torch.randn(out_samples, 2, 1, generator=gen, dtype=torch.float64)).squeeze(-1)
    m_q, v_q = learned.mean_field(x_true)
    z_q = m_q + v_q.sqrt() * torch.randn(out_samples, 2, generator=gen, dtype=torch.float64)
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    extent = [0, float(b[-1] + b[0]), float(b[-1] + b[0]), 0]
    for ax, img, title in ((axes[0, 0], gap, "A: min_φ L(θ, φ) vs B"), (axes[1, 0], mi, "B: I(X; Z) vs B")):
        im = ax.imshow(img.numpy(), extent=extent, cmap="viridis")
        ax.set_xlabel("B22")
        ax.set_ylabel("B11")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    for ax, xs, title in ((axes[0, 1], x_true, "C: true p(x)"), (axes[0, 2], x_learned, "D: learned p_θ*(x)"),
                          (axes[1, 1], z_true, "E: true aggregated posterior"),
                          (axes[1, 2], z_q, "F: learned aggregated posterior q_φ*(z)")):
        ax.scatter(xs[:, 0], xs[:, 1], s=3, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal", "datalim")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@register("libi-figure1", "Yacoby, Pan & Doshi-Velez (2020) Figure 1: the ELBO's preferred optima of the Cholesky model", "Yacoby, Pan & Doshi-Velez (2020), Figure 1")
def figure1(options: ExperimentOptions) -> ExperimentReport:
    st = options.configure(dict(resolution=20 if options.quick else 50, svi_steps=800 if options.quick else 3000))
    start = time.perf_counter()
    resolution = st["resolution"]
    b, gap, mi = landscape(resolution)
    i, j = divmod(int(gap.argmin()), resolution)
    k, m = divmod(int(mi.argmax()), resolution)
    grid = ResultTable("landscape", "Closed-form landscape over B = diag(B11, B22), A fixed (panels A-B)",
                       ["argmin L", "argmax I(X;Z)", "B = 0.006 I (truth)"], ["B11", "B22", "min_φ L", "I(X; Z)"])
    gt = CholeskyDecoder(A_GT, B_GT, SIGMA_EPS, learn="none")
    for row, (bi, bj) in (("argmin L", (b[i], b[j])), ("argmax I(X;Z)", (b[k], b[m])),
                          ("B = 0.006 I (truth)", (B_GT[0], B_GT[1]))):
        bd = torch.stack([bi, bj])
        dec = CholeskyDecoder(A_GT, bd, SIGMA_EPS, learn="none")
        grid.set(row, "B11", f"{float(bi):.5f}")
        grid.set(row, "B22", f"{float(bj):.5f}")
        grid.set(row, "min_φ L", f"{float(posterior_matching_gap(dec.weight(), dec.noise_var())):.4f}")
        grid.set(row, "I(X; Z)", f"{float(cholesky_mutual_information(A_GT, bd, SIGMA_EPS)):.4f}")
    # SVI check at a few grid points
    checks = ResultTable("svi_check", "SVI (linear mean-field encoder, decoder fixed) against the closed form",
                         [], ["closed form", "SVI", "|difference|"])
    points = [(b[i], b[j]), (b[resolution // 2], b[resolution // 2]), (b[0], b[-1])]
    steps = st["svi_steps"]
    svi_points = []  # every checked point goes into the conclusion: SVI far from the closed form means under-fitted
    for bi, bj in points:
        bd = torch.stack([bi, bj])
        dec = CholeskyDecoder(A_GT, bd, SIGMA_EPS, learn="none")
        cf = float(posterior_matching_gap(dec.weight(), dec.noise_var()))
        sv = svi_gap(bd, steps=steps, seed=options.seed)
        row = f"B=({float(bi):.4f}, {float(bj):.4f})"
        checks.rows.append(row)
        checks.set(row, "closed form", f"{cf:.4f}")
        checks.set(row, "SVI", f"{sv:.4f}")
        checks.set(row, "|difference|", f"{abs(sv - cf):.4f}")
        svi_points.append(f"{row}: SVI {sv:.3f} against {cf:.3f}")
    a_star, l_star = learn_a()
    l_gt = float(posterior_matching_gap(gt.weight(), gt.noise_var()))
    values = ResultTable("L_values", "L(θ, φ) = KL[p(x) || p_θ(x)] + min_φ E KL[q_φ || p_θ(z|x)], A learned (panels C-F)",
                         ["L(θ_GT, φ_GT)", "L(θ*, φ*)"], ["ours", "A"])
    values.set("L(θ_GT, φ_GT)", "ours", f"{l_gt:.4f}", PAPER_L_GT)
    values.set("L(θ_GT, φ_GT)", "A", str(A_GT.tolist()))
    values.set("L(θ*, φ*)", "ours", f"{l_star:.4f}", PAPER_L_STAR)
    values.set("L(θ*, φ*)", "A", str([[round(v, 4) for v in r] for r in a_star.tolist()]))
    fig = _figure(options.out / "figure1.png", b, gap, mi, a_star, seed=options.seed)
    conclusion = (f"The posterior-matching gap is smallest at B = diag({float(b[i]):.4f}, {float(b[j]):.4f}) "
                  f"(high B11, low B22, as the paper's panel A), where I(X; Z) = {float(mi[i, j]):.3f} against "
                  f"{float(mi.min()):.3f}..{float(mi.max()):.3f} over the grid. L(θ_GT) = {l_gt:.3f} "
                  f"(paper 0.532), L(θ*) = {l_star:.3f} (paper 0.196). SVI check ({steps} steps; SVI can only lie "
                  f"above the closed form, by its optimisation error): " + "; ".join(svi_points) + ".")
    return ExperimentReport({"resolution": resolution, "svi_steps": steps, "seed": options.seed},
                            [grid, checks, values], figures=[fig], wall_time=time.perf_counter() - start,
                            conclusion=conclusion)
