r"""Yacoby, Pan & Doshi-Velez (2020): Figure 1 and Table 1.

* ``libi-figure1`` — Figure 1. Panels A/B: over a grid of diagonal ``B`` in :math:`[0, \sigma_\varepsilon^2)^2`
  with ``A`` fixed, :math:`\min_\phi L(\theta, \phi)` (the best mean-field posterior-matching gap, the
  MLE term being 0 for every B) and :math:`I(X; Z)` (Eq. 22), in closed form, checked by SVI (a linear
  mean-field encoder fitted by the ELBO with the decoder fixed) at a few grid points. Panels C-F:
  with ``B`` fixed and ``A`` learned, the minimiser of :math:`L(\theta, \phi^*)` (closed form, LBFGS),
  the true and learned data distributions and aggregated posteriors;
  :math:`L(\theta_{GT}, \phi_{GT}) = 0.532` and :math:`L(\theta^*, \phi^*) = 0.196` in the paper.
* ``libi-table1`` — Table 1: VAE, β-VAE, β-VAE + annealing, Lagging (App. E's schedule,
  :mod:`pyrovae.inference.lagging_segments`; He et al.'s aggressive encoder as the extra row "Lagging (He et al.)")
  and LiBI on the four App. E data sets; importance-sampled Test-LL (Eq. 48) and the smooth kNN statistic
  (:func:`table1_report`); ``--full``: App. E's grids and 10 restarts, selection on the validation split
  (:func:`select_table1`).
"""

from __future__ import annotations

import math
import time

import pyro
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError
from pyrovae.experiments.registry import ExperimentOptions, register
from pyrovae.experiments.results import ExperimentReport, ResultTable
from pyrovae.inference.algorithms import PlainSVI
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.models.linear import (
    CholeskyDecoder, cholesky_mutual_information, linear_vae, posterior_matching_gap, vae_objective_gap,
)
from pyrovae.optim import lbfgs, minimise
from pyrovae.posterior.exact import LinearGaussian, gaussian_kl

__all__ = ["A_GT", "B_GT", "SIGMA_EPS", "landscape", "learn_a", "svi_gap", "figure1", "hyper_grid", "select_table1",
           "table1_report"]

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
    opt = lbfgs(dec.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)
    minimise(lambda: vae_objective_gap(dec.weight(), dec.noise_var(), data_cov), opt, 5)
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


# -- Table 1 --------------------------------------------------------------------------------
TABLE1_KINDS = ("linear-jtex", "cubic-jtex", "gaussian-2to4", "mobius")
#: "Lagging" is App. E's schedule (:mod:`pyrovae.inference.lagging_segments`); He et al.'s aggressive encoder
#: (:mod:`pyrovae.inference.lagging`) is the extra row "Lagging (He et al.)", not in the paper
TABLE1_METHODS = ("VAE", "β-VAE", "β-VAE+Anneal", "Lagging", "Lagging (He et al.)", "LiBI")
PAPER_TABLE1 = {  # (Test-LL, S-kNN) per data set, transcribed from Table 1 of Yacoby, Pan & Doshi-Velez (2020)
    "VAE": [("-3.15 ± 0.04", "1.62 ± 0.12"), ("-5.85 ± 0.63", "4.86 ± 1.82"), ("6.73 ± 0.23", "15.28 ± 7.98"), ("1.88 ± 0.05", "0.38 ± 0.20")],
    "β-VAE": [("-3.15 ± 0.04", "1.62 ± 0.12"), ("-5.47 ± 0.14", "2.99 ± 1.48"), ("7.65 ± 0.09", "4.10 ± 1.22"), ("1.92 ± 0.06", "0.27 ± 0.14")],
    "β-VAE+Anneal": [("-3.15 ± 0.04", "1.63 ± 0.12"), ("-12.91 ± 11.51", "2.86 ± 1.01"), ("7.54 ± 0.14", "5.86 ± 1.66"), ("1.88 ± 0.05", "0.37 ± 0.19")],
    "Lagging": [("-3.15 ± 0.04", "1.62 ± 0.11"), ("-30.64 ± 39.17", "7.07 ± 1.24"), ("6.94 ± 0.53", "15.61 ± 8.26"), ("1.90 ± 0.08", "0.72 ± 0.78")],
    "LiBI": [("-2.99 ± 0.03", "0.06 ± 0.05"), ("-8.90 ± 3.98", "1.75 ± 2.75"), ("7.85 ± 0.05", "0.10 ± 0.08"), ("1.91 ± 0.05", "0.17 ± 0.06")],
}


def build_model(kind: str, seed: int):
    """The learned model of App. E for data set ``kind``: the true likelihood's architecture with the noise
    fixed at the truth, a linear encoder (LinearJTEx, Gaussian), a ReLU one (50 units: Mobius) or the
    sigmoid/cube-root network of :class:`~pyrovae.models.linear.CubeRootEncoder` (CubicJTEx).
    float32, initialised from ``seed``."""
    from torch import nn

    from pyrovae.data.libi import B_JTEX, SIGMA2_GAUSSIAN, SIGMA2_MOBIUS, MobiusNet
    from pyrovae.models.cvae import SigmaCVAE
    from pyrovae.models.linear import CubeRootEncoder, LinearEncoder
    from pyrovae.models.noise import FixedNoise

    torch.manual_seed(seed)
    if kind in ("linear-jtex", "cubic-jtex"):
        dec = CholeskyDecoder(torch.randn(2, 2, dtype=torch.float64), B_JTEX, SIGMA_EPS, learn="A",
                              cube=kind == "cubic-jtex")
        return linear_vae(dec, encoder=CubeRootEncoder(2, 2) if kind == "cubic-jtex" else None).float()
    if kind == "gaussian-2to4":
        model = SigmaCVAE(0, 4, 2, encoder_widths=(2,), decoder_widths=(2,), noise=FixedNoise(SIGMA2_GAUSSIAN**0.5))
        model.decoder = nn.Linear(2, 4, bias=False)
        model.encoder = LinearEncoder(4, 2)
        return model.float()
    if kind == "mobius":
        model = SigmaCVAE(0, 2, 2, encoder_widths=(50,), decoder_widths=(2,), activation="relu",
                          noise=FixedNoise(SIGMA2_MOBIUS**0.5))
        model.decoder = MobiusNet()
        return model.float()
    raise ConfigError(f"unknown data set {kind!r}")


class _BetaFixed:
    """FixedSigma with a β on the KL, optionally annealed linearly from 0 over ``anneal_blocks`` blocks."""

    @staticmethod
    def make(beta: float, anneal_blocks: int = 0):
        from pyrovae.inference.algorithms import FixedSigma

        class BetaFixed(FixedSigma):
            def beta(self, block: int) -> float:
                if anneal_blocks <= 0:
                    return beta
                return beta * min(1.0, block / anneal_blocks)

            def may_stop(self, block: int) -> bool:
                return block >= anneal_blocks

        return BetaFixed()


#: App. E's hyper-parameter grids ("Hyper-parameter Search"), per data set where they differ
LAGGING_SEGMENTS = {"linear-jtex": (40, 50, 60, 70), "cubic-jtex": (30, 40, 50, 60), "gaussian-2to4": (5, 10, 15, 20),
                    "mobius": (60, 70, 80, 90)}
BETA_GRID = (0.5, 2.0, 5.0)
ANNEAL_GRID = (0.5, 1.0, 2.0, 5.0)
LIBI_EPS_HZ = {"mobius": (1.0, 10.0, 20.0)}  # every other data set: (0.001, 1, 10, 20)
LIBI_EPS = (0.2, 0.5)  # ε_Σ and ε_μ
LIBI_ROUNDS = (1, 6)


def hyper_grid(method: str, kind: str, cfg: dict) -> list[dict]:
    """The hyper-parameter settings of ``method`` on ``kind``: App. E's grid with ``cfg["grid"]``, else the one
    setting of ``cfg`` (β, ε_HZ, rounds; Lagging: the grid's smallest R)."""
    if not cfg.get("grid"):
        return [{"VAE": {}, "β-VAE": {"beta": cfg["beta"]}, "β-VAE+Anneal": {"beta": cfg["beta"]},
                 "Lagging": {"segments": LAGGING_SEGMENTS[kind][0]}, "Lagging (He et al.)": {},
                 "LiBI": {"eps_hz": cfg["eps_hz"], "eps_sigma": 0.5, "eps_mu": 0.5, "rounds": cfg["rounds"]}}[method]]
    if method == "β-VAE":
        return [{"beta": b} for b in BETA_GRID]
    if method == "β-VAE+Anneal":
        return [{"beta": b} for b in ANNEAL_GRID]
    if method == "Lagging":
        return [{"segments": r} for r in LAGGING_SEGMENTS[kind]]
    if method == "LiBI":
        return [{"eps_hz": h, "eps_sigma": es, "eps_mu": em, "rounds": r}
                for h in LIBI_EPS_HZ.get(kind, (0.001, 1.0, 10.0, 20.0)) for es in LIBI_EPS for em in LIBI_EPS
                for r in LIBI_ROUNDS]
    return [{}]


def _label(hyper: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in hyper.items()) or "-"


#: the methods whose repetitions train as one batch of replicates (LiBI and He et al.'s Lagging run one at a time)
BATCHED_METHODS = ("VAE", "β-VAE", "β-VAE+Anneal", "Lagging")


def _algorithm(method: str, data: dict, cfg: dict, hyper: dict):
    from pyrovae.inference.algorithms import FixedSigma
    from pyrovae.inference.lagging import LaggingInference
    from pyrovae.inference.lagging_segments import SegmentedLagging

    blocks = max(1, cfg["steps"] // cfg["K"])
    return {"VAE": lambda: FixedSigma(),
            "β-VAE": lambda: _BetaFixed.make(hyper["beta"]),
            "β-VAE+Anneal": lambda: _BetaFixed.make(hyper["beta"], max(1, blocks // 2)),
            "Lagging": lambda: SegmentedLagging(hyper["segments"]),
            "Lagging (He et al.)": lambda: LaggingInference(validation=data["validation"])}[method]()


def _train_one(method: str, kind: str, data: dict, seed: int, cfg: dict, hyper: dict):
    from pyrovae.inference.libi import LiBI, LiBISettings

    model = build_model(kind, seed)
    if method == "LiBI":
        half = max(1, cfg["steps"] // (2 * hyper["rounds"]))
        st = LiBISettings(rounds=hyper["rounds"], step1_steps=half, step2_steps=half, lr=cfg["lr"],
                          eps_hz=hyper["eps_hz"], eps_sigma=hyper["eps_sigma"], eps_mu=hyper["eps_mu"],
                          val_samples=cfg["val_samples"], seed=seed)
        return LiBI(model, st).fit(data["train"], data["validation"]).model
    Trainer(model, data["train"], _algorithm(method, data, cfg, hyper), _train_settings(cfg), seeds=[seed]).run()
    return model


def _train_settings(cfg: dict) -> TrainSettings:
    return TrainSettings(K=cfg["K"], lr=cfg["lr"], max_steps=cfg["steps"], tol=0.0, checkpoint_every=10**9)


def _evaluate(model, test, cfg: dict, seed: int) -> tuple[float, float]:
    """Test-LL (Eq. 48) and the smooth kNN statistic on the test split."""
    from pyrovae.metrics.likelihood import vae_log_likelihood
    from pyrovae.metrics.two_sample import smooth_knn_repeated

    y = test.y
    x = y.new_zeros(y.shape[0], 0)
    with torch.no_grad():
        ll = float(vae_log_likelihood(model, x, y, num_samples=cfg["S"], inflation=2.0, seed=seed).mean())
        torch.manual_seed(seed)
        gen = model.sample(x)
        knn = float(smooth_knn_repeated(y, gen, n=min(cfg["knn_n"], y.shape[0]), repeats=cfg["knn_repeats"],
                                        alpha=cfg["alpha"], seed=seed).value)
    return ll, knn


def _validate(model, method: str, hyper: dict, val, cfg: dict, seed: int) -> tuple[float, float]:
    """``(own, log_lik)`` on the validation split: the method's own training loss (the β-weighted negative ELBO
    per point, β = 1 for VAE and both Lagging rows, averaged over 10 draws of z; LiBI, which keeps its round by
    the validation log-likelihood, −log-likelihood) and the importance-sampled log-likelihood (Eq. 48,
    ``val_samples`` draws), which selects the hyper-parameters (App. E)."""
    from pyrovae.metrics.likelihood import vae_log_likelihood

    y = val.y
    x = y.new_zeros(y.shape[0], 0)
    with torch.no_grad():
        ll = float(vae_log_likelihood(model, x, y, num_samples=cfg["val_samples"], inflation=2.0, seed=seed).mean())
        if method == "LiBI":
            return -ll, ll
        gen = torch.Generator().manual_seed(seed)
        beta = hyper.get("beta", 1.0)
        own = sum(float((t["recon"] + beta * t["kl"]).mean()) for t in (model.terms(x, y, gen) for _ in range(10))) / 10
    return own, ll


def _cell(model, method, hyper, data, cfg, seed) -> dict:
    val_own, val_ll = _validate(model, method, hyper, data["validation"], cfg, seed)
    ll, knn = _evaluate(model, data["test"], cfg, seed)
    return {"ll": ll, "knn": knn, "val_own": val_own, "val_ll": val_ll, "error": ""}


def _missing(error: str) -> dict:
    return {"ll": math.nan, "knn": math.nan, "val_own": math.nan, "val_ll": math.nan, "error": error}


def _table1_cell(method: str, kind: str, index: int, seed: int, cfg: dict, hyper: dict | None = None) -> dict:
    """One run (method, hyper-parameters, data-set version ``index``, restart seed ``seed``): its test Test-LL and
    S-kNN and its validation numbers (``val_own``, ``val_ll``); a run that fails counts as missing (NA in the
    paper's table) and its error is reported."""
    from pyrovae.data.libi import libi_splits

    hyper = hyper if hyper is not None else hyper_grid(method, kind, {**cfg, "grid": False})[0]
    data = libi_splits(kind, index=index, n=cfg["n"], seed=cfg["data_seed"])
    try:
        model = _train_one(method, kind, data, seed, cfg, hyper)
        return _cell(model, method, hyper, data, cfg, seed)
    except Exception as err:  # noqa: BLE001 — reported in the table's conclusion
        return _missing(_failure(kind, method, index, err))


def _failure(kind: str, method: str, index: int, err: Exception) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{kind}/{method}/{index}: {type(err).__name__}: {first_line}"


def _table1_cells(method: str, kind: str, indices: list[int], seeds: list[int], cfg: dict,
                  hyper: dict | None = None) -> list[dict]:
    """The runs of one (method, data set, hyper-parameters) over its data-set versions and restarts: the batched
    methods train every run (its own version and seed) as one replicate of one batch, each equal to its
    :func:`_table1_cell`; the others, or a batch that raises, run one by one."""
    from pyrovae.data.libi import libi_splits

    hyper = hyper if hyper is not None else hyper_grid(method, kind, {**cfg, "grid": False})[0]
    if method not in BATCHED_METHODS or len(indices) < 2:
        return [_table1_cell(method, kind, i, s, cfg, hyper) for i, s in zip(indices, seeds)]
    datas = [libi_splits(kind, index=i, n=cfg["n"], seed=cfg["data_seed"]) for i in indices]
    models = [build_model(kind, s) for s in seeds]
    try:
        Trainer(models, [d["train"] for d in datas], [_algorithm(method, d, cfg, hyper) for d in datas],
                _train_settings(cfg), seeds=seeds).run()
    except Exception:  # noqa: BLE001 — one replicate's error (e.g. a failed Cholesky): run each alone
        return [_table1_cell(method, kind, i, s, cfg, hyper) for i, s in zip(indices, seeds)]
    cells = []
    for i, s, d, model in zip(indices, seeds, datas, models):
        try:
            cells.append(_cell(model, method, hyper, d, cfg, s))
        except Exception as err:  # noqa: BLE001
            cells.append(_missing(_failure(kind, method, i, err)))
    return cells


def select_table1(candidates: dict[str, list[dict]], versions: int) -> tuple[str, list[dict]]:
    """App. E's selection for one (method, data set): per data-set version the restart "preferred by its own
    objective on the validation set" (lowest ``val_own``), then the hyper-parameters whose kept restarts have the
    highest average validation log-likelihood (``val_ll``; the paper does not name the split: never the test).
    Reads ``index``, ``val_own`` and ``val_ll`` only. Returns ``(label, kept runs)``."""
    def finite(v: float, worst: float) -> float:
        return v if math.isfinite(v) else worst

    kept = {}
    for label, runs in candidates.items():
        kept[label] = [min((r for r in runs if r["index"] == v), key=lambda r: finite(r["val_own"], math.inf))
                       for v in range(versions) if any(r["index"] == v for r in runs)]
    best = max(kept, key=lambda label: sum(finite(r["val_ll"], -math.inf) for r in kept[label]) / max(1, len(kept[label])))
    return best, kept[best]


def table1_report(cfg: dict, kinds=TABLE1_KINDS, methods=TABLE1_METHODS, reps: int = 1, seed: int = 0,
                  options: ExperimentOptions | None = None) -> ExperimentReport:
    """Table 1 with settings ``cfg`` (n, steps, K, lr, beta, rounds, eps_hz, S, knn_n, knn_repeats, alpha,
    val_samples; optional ``restarts`` (default 1) and ``grid`` (App. E's hyper-parameter grids, default off)).
    Data-set version ``v`` of restart ``j`` trains from model seed ``seed + v + 1000 j``; the runs of one
    (data set, method, hyper-parameters) form one task; tasks run on the experiment's executor and are
    kept in its output directory (``options``; None: in this process, nothing kept); selection by
    :func:`select_table1`."""
    from pyrovae.experiments.results import summarize_values
    from pyrovae.experiments.runner import map_tasks

    start = time.perf_counter()
    cfg = {**cfg, "data_seed": seed}
    restarts = int(cfg.get("restarts", 1))
    cols = [f"{k} {m}" for k in kinds for m in ("Test-LL", "S-kNN")]
    table = ResultTable("table1", "Test log-likelihood (higher is better) and smooth kNN statistic (lower is better)",
                        list(methods), cols,
                        note=f"S-kNN: k = 1, n = {cfg['knn_n']} per side, α = {cfg['alpha']}, averaged over "
                             f"{cfg['knn_repeats']} subsamples of the test set vs {cfg['n']} model draws; "
                             f"Test-LL: importance sampling (Eq. 48), encoder proposal, variance × 2, S = {cfg['S']}. "
                             f"{reps} data-set versions × {restarts} restarts; per version the restart with the best "
                             "own validation objective, per method the hyper-parameters with the highest mean "
                             f"validation log-likelihood (S = {cfg['val_samples']}). 'Lagging' is App. E's schedule "
                             "(R segments, each half encoder alone, half joint); 'Lagging (He et al.)' the aggressive "
                             "encoder of He et al. (2019), not in the paper.")
    chosen = ResultTable("table1_selection", "Selected hyper-parameters (validation only)", list(methods),
                         [f"{k}" for k in kinds])
    groups = [(kind, method, _label(h), h) for kind in kinds for method in methods for h in hyper_grid(method, kind, cfg)]
    indices = [v for j in range(restarts) for v in range(reps)]
    seeds = [seed + v + 1000 * j for j in range(restarts) for v in range(reps)]
    tasks = [{"method": m, "kind": k, "indices": indices, "seeds": seeds, "cfg": cfg, "hyper": h}
             for k, m, _, h in groups]

    results = map_tasks(_table1_cells, tasks, options)
    runs = {}
    for (kind, method, label, _), cells in zip(groups, results):
        runs.setdefault((kind, method), {})[label] = [dict(c, index=i, seed=s) for c, i, s in zip(cells, indices, seeds)]
    errors = [c["error"] for cands in runs.values() for cells in cands.values() for c in cells if c["error"]]
    raw = {}
    for kind in kinds:
        i = TABLE1_KINDS.index(kind)
        for method in methods:
            label, kept = select_table1(runs[(kind, method)], reps)
            lls, knns = [r["ll"] for r in kept], [r["knn"] for r in kept]
            raw[(kind, method)] = (lls, knns)
            paper = PAPER_TABLE1.get(method)
            table.set(method, f"{kind} Test-LL", summarize_values(lls), paper[i][0] if paper else None)
            table.set(method, f"{kind} S-kNN", summarize_values(knns), paper[i][1] if paper else None)
            chosen.set(method, kind, label)
    conclusion = ""
    if "linear-jtex" in kinds and {"VAE", "LiBI"} <= set(methods):
        v, l = raw[("linear-jtex", "VAE")], raw[("linear-jtex", "LiBI")]
        mean = lambda a: summarize_values(a).mean  # noqa: E731
        better_ll, better_knn = mean(l[0]) > mean(v[0]), mean(l[1]) < mean(v[1])
        conclusion = (f"LinearJTEx: LiBI Test-LL {mean(l[0]):.3f} vs VAE {mean(v[0]):.3f} "
                      f"({'better' if better_ll else 'not better'}); S-kNN {mean(l[1]):.3f} vs {mean(v[1]):.3f} "
                      f"({'better' if better_knn else 'not better'}).")
    if errors:
        conclusion += " Failed runs: " + "; ".join(errors)
    return ExperimentReport({"reps": reps, "seed": seed, **cfg},
                            [table, chosen], wall_time=time.perf_counter() - start, conclusion=conclusion)


#: the default (no flag): App. E's training length with the one hyper-parameter setting and no restarts
TABLE1_DEFAULT = dict(n=500, steps=30_000, K=100, lr=0.01, beta=2.0, rounds=6, eps_hz=1.0, S=5000, knn_n=100,
                      knn_repeats=20_000, alpha=1.0, val_samples=500)
TABLE1_QUICK = dict(n=500, steps=3000, K=100, lr=0.01, beta=2.0, rounds=2, eps_hz=1.0, S=1000, knn_n=100,
                    knn_repeats=200, alpha=1.0, val_samples=200)
#: App. E's protocol: 5 data sets per kind, 10 restarts per method and hyper-parameters, the grids above
TABLE1_FULL = dict(TABLE1_DEFAULT, restarts=10, grid=True)
TABLE1_FULL_PROTOCOL = (
    "App. E of Yacoby, Pan & Doshi-Velez (2020): 5 versions of each data set (500 train / validation / test points), "
    "10 restarts for every method and hyper-parameter setting, 30,000 full-batch Adam steps at lr 0.01 (the paper's "
    "30k epochs at n = 500), App. E's grids (β-VAE β ∈ {0.5, 2, 5}; annealed β ∈ {0.5, 1, 2, 5}; Lagging R per data "
    "set; LiBI ε_HZ × ε_Σ × ε_μ × R), per version the restart with the best own validation objective, per method "
    "the hyper-parameters with the highest mean validation log-likelihood; Test-LL with S = 5,000, S-kNN over "
    "20,000 subsamples of 100 a side. Our choices where the paper is silent: KL annealing linear over the first "
    "half; half of each Lagging segment encoder-only; hyper-parameters chosen on the validation split; He et al.'s "
    "Lagging (extra row) with its defaults, no grid.")


@register("libi-table1", "Yacoby, Pan & Doshi-Velez (2020) Table 1: VAE baselines against LiBI on four synthetic "
          "data sets", "Yacoby, Pan & Doshi-Velez (2020), Table 1", full=TABLE1_FULL_PROTOCOL)
def table1(options: ExperimentOptions) -> ExperimentReport:
    reps = options.repetitions(quick=2, full=5)
    cfg = options.configure(dict(TABLE1_QUICK if options.quick else TABLE1_FULL if options.full else TABLE1_DEFAULT))
    return table1_report(cfg, reps=reps, seed=options.seed, options=options)
