"""One contract for every combination ``pyrovae train`` accepts (:mod:`tests.contract.cases`), each
on a tiny problem through the public API:

(a) training lowers the negative ELBO from the initial weights (same draws before and after);
(b) a backward pass gives every parameter the trainer's optimiser moves a finite gradient, non-zero
    somewhere (the block engine's after one update, M2's and LiBI's at once), and those collections
    hold every parameter of the model;
(c) a run directory reloads to the same weights, and k steps resumed for k more end where 2k
    uninterrupted steps end — or, where a run cannot be extended, the refusal says why;
(d) replicate r of a batch of three equals the single run with its seed — or, where a combination does
    not batch (LiBI's own loop), the refusal says why.
"""

from __future__ import annotations

import re

import pyro
import pytest
import torch

from pyrovae.api import build_algorithm, build_data, build_model, load_run, settings_from, train_batch
from pyrovae.cli.main import app
from pyrovae.config import MODELS
from pyrovae.errors import ConfigError
from pyrovae.inference.catalog import RUN_ALGORITHMS
from pyrovae.inference.libi import LiBI, LiBISettings, inference_trainer
from pyrovae.inference.m2_training import m2_objective, m2_step_loss
from pyrovae.inference.objectives import ELBOS
from pyrovae.inference.trainer import Trainer
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import NOISES
from tests.cli.cli_helpers import runner
from tests.contract.cases import COMBINATIONS, DATA, SEED
from tests.inference.test_trainer import state_equal

IDS = [str(c) for c in COMBINATIONS]
#: Draws per point of the negative ELBO compared before and after training (the same draws for both).
DRAWS = 10
#: (a): the trained negative ELBO lies at least this fraction of its initial value below it. Measured
#: (seed 3, the same draws before and after): the smallest drop is 0.97 % (LiBI on the scalar linear
#: model, two steps per phase), the next 1.15 %; the median 6.4 %, the largest 40 %.
DROP = 0.004


# -- the list itself ------------------------------------------------------------------------------
def test_the_combinations_cover_every_model_noise_algorithm_and_elbo():
    assert len(COMBINATIONS) == len(set(COMBINATIONS)) > 0
    assert {c.model for c in COMBINATIONS} == set(MODELS) == set(DATA)
    assert {c.noise for c in COMBINATIONS} - {None} == set(NOISES)
    assert {c.algorithm for c in COMBINATIONS} == set(RUN_ALGORITHMS)
    assert {c.elbo for c in COMBINATIONS} == set(ELBOS)


def test_the_command_line_offers_what_the_combinations_are_made_of():
    """`pyrovae train --help` names every model, observation model, algorithm and ELBO of the lists
    (on a terminal wide enough that no help line is cut, read with the table's borders and line
    breaks taken out)."""
    output = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output
    text = re.sub(r"[\s│]", "", output)
    for name in (*MODELS, *NOISES, *RUN_ALGORITHMS, *ELBOS):
        assert name in text, name


# -- (a) training lowers the loss -------------------------------------------------------------------
def _neg_elbo(model, data, cfg) -> float:
    """The per-point negative ELBO with ``DRAWS`` draws per point from a fixed generator (M2: its
    objective of Eq. 5, ELBO or IWAE as trained, with a fixed seed)."""
    if isinstance(model, SigmaCVAE):
        generator = torch.Generator().manual_seed(0)
        x = data.condition.to(data.observed.dtype)
        with torch.no_grad():
            terms = [model.terms(x, data.observed, generator=generator) for _ in range(DRAWS)]
        return float(torch.stack([t["recon"] + t["kl"] for t in terms]).mean())
    return m2_objective(model, data, "iwae" if cfg.elbo == "iwae" else "elbo", cfg.gamma, cfg.alpha,
                        max(cfg.particles, 2), draws=DRAWS, seed=0)


@pytest.mark.parametrize("c", COMBINATIONS, ids=IDS)
def test_training_lowers_the_loss(runs, c):
    cfg = runs.config(c)
    data = build_data(cfg)
    pyro.set_rng_seed(cfg.seed)  # the weights train() starts from
    before = _neg_elbo(build_model(cfg, data), data, cfg)
    after = _neg_elbo(runs.whole(c).model, data, cfg)
    assert after < before - DROP * abs(before), (before, after)


# -- (b) gradients reach every parameter ---------------------------------------------------------------
def _assert_gradients(named: dict[str, torch.Tensor]) -> None:
    assert named
    for name, p in named.items():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: gradient not finite"
        assert bool((p.grad != 0).any()), f"{name}: gradient zero everywhere"


def _engine_steps(trainer: Trainer, beta: float) -> dict[str, torch.Tensor]:
    """Two steps of ``trainer`` (the gradients of the second stay on the parameters: after one update,
    a layer initialised at zero, as the last of the LV-VAE's σ network, passes the gradient on); the
    stacked parameters its optimiser moves, by name."""
    trained = {id(p) for group in trainer.optim.param_groups for p in group["params"]}
    named = {name: p for name, p in trainer.stack.stacked("param").items() if id(p) in trained}
    for _ in range(2):
        trainer.step(*trainer.batch(), torch.tensor([beta]))
    return named


@pytest.mark.parametrize("c", COMBINATIONS, ids=IDS)
def test_gradients_reach_every_parameter(runs, c):
    cfg = runs.config(c)
    data = build_data(cfg)
    pyro.set_rng_seed(cfg.seed)
    if c.model == "m2":  # the M2 trainer's Adam runs over model.parameters()
        model = build_model(cfg, data)
        x_l, y_l, x_u = data.split()
        y_l = y_l.reshape(-1) if model.discrete else y_l
        objective = "iwae" if cfg.elbo == "iwae" else "elbo"
        m2_step_loss(model, x_u, x_l, y_l, len(x_u), len(x_l), objective, cfg.gamma, cfg.alpha,
                     cfg.particles).backward()
        named = dict(model.named_parameters())
        # documented in pyrovae.models.m2: the IWAE bound sums a discrete y out exactly, so q(y|x) is
        # trained by the α term alone; with α = 0 (the default) it takes no gradient
        idle = {n for n in named if n.startswith("y_encoder.")} if objective == "iwae" and cfg.alpha == 0 else set()
        assert all(named[n].grad is None or not named[n].grad.any() for n in idle)
        _assert_gradients({n: p for n, p in named.items() if n not in idle})
        return
    if c.algorithm == "libi":  # step 1 moves θ and the code network, step 2 the encoder (the engine)
        model = build_model(cfg, data)
        libi = LiBI(model, LiBISettings(lr=cfg.lr, seed=cfg.seed))
        y = data.observed.to(next(model.parameters()).dtype)
        libi.generative_loss(y).backward()
        names = {id(p): name for name, p in [*model.named_parameters(), *libi.code_net.named_parameters("h")]}
        _assert_gradients({names[id(p)]: p for p in libi.generative_parameters()})
        step2 = _engine_steps(inference_trainer([libi], y[None], [cfg.seed]), 1.0)
        _assert_gradients(step2)
        generative = {names[id(p)] for p in libi.generative_parameters()}
        assert generative | set(step2) >= {name for name, _ in model.named_parameters()}
        return
    algorithm = build_algorithm(cfg)
    model = build_model(cfg, data, algorithm)
    trainer = Trainer(model, data, algorithm, settings_from(cfg), seeds=[cfg.seed])
    named = _engine_steps(trainer, algorithm.beta(0))
    assert set(named) == {name for name, _ in model.named_parameters()}
    _assert_gradients(named)


# -- (c) save, load and resume ------------------------------------------------------------------------
def _resume_refusal(c) -> str | None:
    """What the refusal says where a run cannot be extended: LiBI writes its one checkpoint at the end; the
    Lagging segments are fractions of max_steps (a run of k steps is another schedule). M2 trains on from
    the engine's checkpoint (``training/``)."""
    if c.algorithm == "libi":
        return "writes its one checkpoint at the end, so its run cannot resume"
    if c.algorithm == "lagging-segments":
        return "resume it with the same schedule and max_steps"
    return None


@pytest.mark.parametrize("c", COMBINATIONS, ids=IDS)
def test_a_run_reloads_and_resumes_to_the_uninterrupted_run(runs, c):
    whole = runs.whole(c)
    model, _, cfg = load_run(whole.run_dir)
    assert cfg == runs.config(c)
    assert state_equal(model.state_dict(), whole.model.state_dict())
    resumed = runs.resumed(c)
    refusal = _resume_refusal(c)
    if refusal is not None:
        assert isinstance(resumed, ConfigError) and refusal in str(resumed), resumed
        return
    assert not isinstance(resumed, ConfigError), resumed
    assert resumed.metrics["resumed"] and not whole.metrics["resumed"] and resumed.status == whole.status
    assert state_equal(resumed.model.state_dict(), whole.model.state_dict())
    clock = ["time", "seconds"]  # the σ-CVAE's and M2's
    assert resumed.history.drop(columns=clock, errors="ignore").equals(whole.history.drop(columns=clock, errors="ignore"))
    ignore = {"wall_time", "resumed"}
    assert {k: v for k, v in resumed.metrics.items() if k not in ignore} == \
        {k: v for k, v in whole.metrics.items() if k not in ignore}


# -- (d) a replicate of a batch equals its single run ----------------------------------------------------
def _close(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


@pytest.mark.parametrize("c", COMBINATIONS, ids=IDS)
def test_a_replicate_of_a_batch_equals_its_single_run(runs, c, tmp_path):
    cfg = runs.config(c)
    if c.algorithm == "libi":  # its own loop trains one run at a time
        with pytest.raises(ConfigError, match="trains through its own loop, one run at a time"):
            train_batch([cfg, cfg.replace(seed=SEED + 1)], [tmp_path / "a", tmp_path / "b"])
        return
    if c.model == "m2":  # train_m2_batch (LIN too): the middle replicate is train() with its seed
        batch, single = runs.batch(c), runs.whole(c)
        middle = batch[1]
        assert middle.status == single.status == "finished" and middle.metrics["seed"] == single.metrics["seed"]
        assert middle.metrics["neg_elbo"] == pytest.approx(single.metrics["neg_elbo"], rel=1e-5)
        assert _close(middle.model.state_dict(), single.model.state_dict())
        assert not _close(batch[0].model.state_dict(), single.model.state_dict())
        return
    batch, single = runs.batch(c), runs.whole(c)
    middle = batch[1]
    assert middle.status == single.status and middle.metrics["seed"] == single.metrics["seed"] == SEED
    columns = ["loss", "recon", "kl", "neg_elbo", "sigma", "beta"]
    assert len(middle.history) == len(single.history) > 0
    torch.testing.assert_close(torch.tensor(middle.history[columns].to_numpy()),
                               torch.tensor(single.history[columns].to_numpy()), rtol=1e-5, atol=1e-6)
    assert list(middle.history["event"]) == list(single.history["event"])
    assert _close(middle.model.state_dict(), single.model.state_dict())
    for other in (batch[0], batch[2]):  # the other replicates are runs of their own seeds, not copies
        assert not _close(other.model.state_dict(), single.model.state_dict())
