"""The combinations the contract tests run: every model × observation model × algorithm × ELBO that
``pyrovae train`` accepts, generated from the library's own lists (:data:`pyrovae.config.MODELS`,
:data:`pyrovae.models.noise.NOISES`, :data:`pyrovae.inference.catalog.RUN_ALGORITHMS`,
:data:`pyrovae.inference.objectives.ELBOS`) and its own refusals (:meth:`RunConfig.validate`, whose
last check is :func:`pyrovae.combinations.check_combination`). A name added to one of those lists,
or a refusal lifted, is tested without touching this file.

``noise=None`` (the observation model the algorithm needs) is kept only where the combination
accepts no named observation model (the linear models' noise tied to their decoder); elsewhere it
builds one of the named ones, already in the list.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyrovae.api import build_algorithm
from pyrovae.config import MODELS, RunConfig
from pyrovae.errors import ConfigError
from pyrovae.inference.catalog import ALGORITHMS, RUN_ALGORITHMS
from pyrovae.inference.objectives import ELBOS
from pyrovae.models.noise import NOISES

#: Points of every tiny data set; one seed for every run of the contract.
N, SEED = 32, 3
#: Steps k of the first half of a run (the resume check trains k, then k more); an algorithm whose
#: schedule needs more steps (the Lagging segments of Yacoby, Pan & Doshi-Velez 2020, App. E) gets them.
STEPS = 2
#: Small networks and a learning rate at which a few Adam steps move a tiny problem visibly.
SMALL = dict(encoder_widths=[4], decoder_widths=[4], lr=0.005, n=N)
BLOCKS = dict(tol=0.0, checkpoint_every=10**6)  # the block engine's: no early stop, one checkpoint at the end
#: The tiny data set of each model kind: a registered generator, or (``None``) a one-column file of
#: x = θz + ε written by :func:`linear_points` (no registered generator has one column).
DATA = {"cvae": "two-moon", "vae": "two-moon", "m2": "discrete-semicircle", "linear": None, "cholesky": "linear-jtex"}


@dataclass(frozen=True)
class Combination:
    model: str
    noise: str | None
    algorithm: str
    elbo: str

    def __str__(self) -> str:
        return f"{self.model}-{self.noise or 'default'}-{self.algorithm}-{self.elbo}"


def _accepted(model: str, noise: str | None, algorithm: str, elbo: str) -> bool:
    try:
        RunConfig(model=model, noise=noise, algorithm=algorithm, elbo=elbo).validate()
    except ConfigError:
        return False
    return True


def allowed_combinations() -> list[Combination]:
    """Every accepted combination, a default observation model only where no named one is accepted."""
    named = [Combination(*c) for c in itertools.product(MODELS, NOISES, RUN_ALGORITHMS, ELBOS) if _accepted(*c)]
    taken = {(c.model, c.algorithm, c.elbo) for c in named}
    default = [Combination(m, None, a, e) for m, a, e in itertools.product(MODELS, RUN_ALGORITHMS, ELBOS)
               if (m, a, e) not in taken and _accepted(m, None, a, e)]
    return named + default


COMBINATIONS = allowed_combinations()


def linear_points(path: Path) -> Path:
    """``N`` points x = θz + ε, θ = 0.8, noise sd 0.6 (the scalar linear model of Yacoby, Pan &
    Doshi-Velez 2020, App. C.1, whose x has variance θ² + 0.6² = 1 = ``sigma0``²), as a one-column CSV."""
    gen = np.random.default_rng(0)
    x = 0.8 * gen.standard_normal(N) + 0.6 * gen.standard_normal(N)
    path.write_text("x\n" + "\n".join(f"{v:.6f}" for v in x) + "\n")
    return path


def half_steps(c: Combination) -> int:
    """k: ``STEPS``; the segments of an algorithm that trains in segments (one step each); one step of
    Lagging Inference Networks (He et al. 2019), whose every step runs up to 100 encoder steps first."""
    if c.algorithm == "lagging":
        return 1
    if c.algorithm not in ALGORITHMS:  # LiBI: its own two phases, not a plug-in of the block engine
        return STEPS
    base = RunConfig(model=c.model, noise=c.noise, algorithm=c.algorithm, elbo=c.elbo).validate()
    return max(STEPS, getattr(build_algorithm(base), "segments", 0))


def tiny_config(c: Combination, linear_file: Path, steps: int, seed: int = SEED) -> RunConfig:
    """``c`` on its tiny data with small networks, trained for ``steps`` steps (M2: epochs, one step
    each: the batch holds every point), blocks of k steps, IWAE with two particles."""
    data = {"data_file": str(linear_file)} if DATA[c.model] is None else {"dataset": DATA[c.model]}
    # M2: epochs of one step (its batch holds every point); LiBI: max_steps over its two phases, on all
    # the data; the block engine: blocks of k steps, mini-batches of a quarter, no early stop
    if c.model == "m2":
        length = {"epochs": steps}
    elif c.algorithm == "libi":
        length = {"max_steps": steps}
    else:
        length = {"max_steps": steps, "batch_size": N // 4, "K": half_steps(c), **BLOCKS}
    return RunConfig(model=c.model, noise=c.noise, algorithm=c.algorithm, elbo=c.elbo,
                     particles=2 if c.elbo == "iwae" else 1, seed=seed, **SMALL, **data, **length).validate()
