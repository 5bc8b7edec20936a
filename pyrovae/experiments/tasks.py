"""Helpers shared by the experiments that train a σ-CVAE in process on a data set they built
(Liu & Wang 2025's Tables 3 and 4 and its MNIST appendix): one training call, or several runs with
their own data and seeds as one batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyro
import torch

from pyrovae.data.base import Dataset
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.trainer import Trainer, TrainResult, TrainSettings
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import make_noise

__all__ = ["CVAESettings", "fit_cvae", "fit_cvaes"]


@dataclass
class CVAESettings:
    """A σ-CVAE and how to train it. Defaults: Liu & Wang (2025) App. F for Sec. 5.2 (tanh, latent 5,
    encoder [32, 16, 8, 4], decoder [8, 32, 16, 4]), Algorithm 1 with K = 25 and C = 0.05,
    Adam lr 0.005, full batch, convergence at |Δ mean loss| ≤ 0.001 between blocks.
    ``calibration`` is the calibrated algorithm's variant: ``paper`` (Algorithm 1), ``code`` (the
    authors' public code) or ``robust`` (ours, :mod:`pyrovae.inference.robust_calibration`; no C)."""

    latent_dim: int = 5
    encoder_widths: list[int] = field(default_factory=lambda: [32, 16, 8, 4])
    decoder_widths: list[int] = field(default_factory=lambda: [8, 32, 16, 4])
    activation: str = "tanh"
    algorithm: str = "calibrated"
    calibration: str = "paper"
    sigma0: float = 1.0
    K: int = 25
    C: float = 0.05
    lr: float = 0.005
    tol: float = 1e-3
    max_steps: int = 20_000
    batch_size: int | None = None

    def settings(self) -> TrainSettings:
        return TrainSettings(K=self.K, lr=self.lr, max_steps=self.max_steps, tol=self.tol, batch_size=self.batch_size)


def fit_cvae(data: Dataset, settings: CVAESettings, seed: int, device: str = "cpu") -> TrainResult:
    """Train a σ-CVAE sized for ``data`` (in this process, one torch thread) on ``device``; the
    trained model comes back on the CPU, where the experiments evaluate it. The initial weights
    are drawn on the CPU, so they do not depend on the device."""
    return fit_cvaes([data], settings, [seed], device)[0]


def fit_cvaes(datas: Sequence[Dataset], settings: CVAESettings, seeds: Sequence[int], device: str = "cpu",
              run_dir: str | Path | None = None) -> list[TrainResult]:
    """:func:`fit_cvae` for every ``(datas[r], seeds[r])`` (data sets of one size and shape), trained as
    one batched program: replicate ``r`` starts from the weights, and draws from the stream, of a run
    seeded ``seeds[r]`` alone (``pyro.set_rng_seed(seed)``, then the model's weights, then the stream's
    seed from torch's generator, as :class:`~pyrovae.inference.trainer.Trainer` draws it for one run),
    so it computes that run up to float rounding (which, over a long run, can move a decision taken at a
    threshold, such as the step at which it converges). With ``run_dir`` the batch keeps a checkpoint
    there and a rerun resumes from it."""
    torch.set_num_threads(1)
    models, algorithms, streams = [], [], []
    for data, seed in zip(datas, seeds, strict=True):
        pyro.set_rng_seed(seed)
        algorithms.append(make_algorithm(settings.algorithm, settings.C, variant=settings.calibration))
        models.append(SigmaCVAE(data.condition_dim, data.observed_dim, settings.latent_dim, settings.encoder_widths,
                                settings.decoder_widths, noise=make_noise(algorithms[-1].noise, settings.sigma0),
                                activation=settings.activation).to(device))
        streams.append(int(torch.randint(0, 2**62, ())))
    with pyro.validation_enabled(False):
        results = Trainer(models, list(datas), algorithms, settings.settings(), run_dir=run_dir, seeds=streams).run()
    for result in results:
        result.model.to("cpu")
    return results
