"""The library's front door: build data, model and algorithm from a config; train; reload.

Example::

    from pyrovae.config import load_config
    from pyrovae.api import train
    result = train(load_config(algorithm="calibrated", K=25), out="runs/demo")
    result.metrics["sigma"], result.metrics["kl"]

Every model kind has the same one call, ``train(load_config(model=KIND, ...), out=...)``: ``cvae``
(the σ-CVAE), ``vae`` (unconditional, every column modelled; ``noise="learned"`` is Berger &
Sebag's LS-VAE, ``"head"`` their LV-VAE), ``m2`` (Kingma et al.'s semi-supervised M2 as in Yacoby,
Pan & Doshi-Velez 2021), ``linear`` / ``cholesky`` (Yacoby, Pan & Doshi-Velez 2020, App. C).
:func:`load_run` rebuilds whichever kind a run directory holds.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pyro
import torch

from pyrovae.config import RunConfig, load_config
from pyrovae.data.base import Dataset
from pyrovae.data.files import load_file
from pyrovae.data.registry import DATASETS, make_dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.executors import Executor, make_executor
from pyrovae.inference.algorithms import Algorithm
from pyrovae.inference.catalog import make_algorithm
from pyrovae.inference.trainer import Trainer, TrainResult, TrainSettings
from pyrovae.model_kinds import MODEL_KINDS
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.plots import write_run_plots
from pyrovae.validation import device as device_name
from pyrovae.validation import integer_at_least
from pyrovae.runs import (check_same_data, checkpoint_dir, data_digest, derive_seeds, discard_checkpoint, has_checkpoint, load_checkpoint,
                          lock_run_dir, prepare_run_dir, read_json, save_checkpoint, write_json, write_text)

__all__ = ["build_data", "build_model", "build_algorithm", "train", "train_batch", "batch_key", "train_reps", "load_run",
           "summarize"]

SUMMARY_KEYS = ("sigma", "kl", "neg_elbo", "sigma_sq_err", "sigma_rel_err", "calibrations", "steps", "wall_time")


def build_data(cfg: RunConfig) -> Dataset:
    """The data set the config names (a registered generator, or ``data_file``), shaped for the
    model kind: the σ-CVAE reads x and y; the unconditional kinds (``vae``, ``linear``,
    ``cholesky``) model every column; M2 needs a semi-supervised data set (labels, some missing)."""
    if cfg.data_file is not None:
        return load_file(cfg.data_file, cfg.model, cfg.x_cols, cfg.y_cols)
    options = {"n": cfg.n, "tau": cfg.tau, "seed": cfg.data_seed}
    accepted = DATASETS[cfg.dataset].options
    data = make_dataset(cfg.dataset, **{k: v for k, v in options.items() if k in accepted})
    kind = MODEL_KINDS[cfg.model]
    if kind.labelled:
        if getattr(data, "labelled", None) is None:
            raise ConfigError(f"model m2 needs labels: data set {cfg.dataset!r} has none (use a semi-supervised one, "
                              "e.g. discrete-semicircle, or a --data-file with a 'label' column)")
        return data
    if not kind.conditional and data.condition_dim > 0:  # an unconditional model of every column
        truth = {k: v for k, v in data.truth.items() if k != "sigma"}  # τ was the noise of y alone
        return Dataset(data.name, data.condition[:, :0], torch.cat([data.condition, data.observed], 1), truth, dict(data.params))
    return data


def build_algorithm(cfg: RunConfig) -> Algorithm:
    return make_algorithm(cfg.algorithm, cfg.C, cfg.calibration, cfg.anneal_blocks, cfg.cycles)


def build_model(cfg: RunConfig, data: Dataset, algorithm: Algorithm | None = None):
    """The model ``cfg.model`` sized for ``data`` (:data:`~pyrovae.model_kinds.MODEL_KINDS`): a
    :class:`SigmaCVAE` with the observation model the algorithm needs (or ``cfg.noise``); the scalar
    linear / Cholesky model in a :class:`SigmaCVAE` shell (tied noise, σ_ε = ``sigma0``); or
    :class:`~pyrovae.models.m2.M2` (fixed σ_ε = ``sigma0``, every network with ``encoder_widths``).
    A data set of the wrong width for the kind raises :class:`ConfigError`."""
    return MODEL_KINDS[cfg.model].build(cfg, data, algorithm)


def settings_from(cfg: RunConfig) -> TrainSettings:
    return TrainSettings(K=cfg.K, lr=cfg.lr, max_steps=cfg.max_steps, tol=cfg.tol, batch_size=cfg.batch_size,
                         elbo=cfg.elbo, particles=cfg.particles, checkpoint_every=cfg.checkpoint_every,
                         convergence=cfg.convergence, threads=cfg.threads)


def train(cfg: RunConfig, out: str | Path | None = None, progress: bool = False, plots: bool = True,
          restart: bool = False) -> TrainResult:
    """Train one run. With ``out``, write config, history, metrics, checkpoint and plots there,
    and resume from a checkpoint already in ``out`` (``restart``: discard it and start over).
    ``out`` is locked while the run writes there (:func:`~pyrovae.runs.lock_run_dir`)."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    run_dir = prepare_run_dir(out) if out is not None else None
    with lock_run_dir(run_dir):
        if run_dir is not None:
            if restart:
                discard_checkpoint(run_dir)
                discard_checkpoint(run_dir / "training")  # an M2 run's checkpoint while it trains
            _check_same_config(run_dir, cfg)
        pyro.set_rng_seed(cfg.seed)
        data = build_data(cfg)
        if run_dir is not None:
            check_same_data(run_dir, data_digest(data.condition, data.observed))
            write_json(run_dir / "config.json", cfg.to_dict())
        if cfg.model == "m2":
            return _train_m2(cfg, data, run_dir, plots, progress)
        if cfg.algorithm == "libi":
            return _train_libi(cfg, data, run_dir)
        algorithm = build_algorithm(cfg)
        model = build_model(cfg, data, algorithm)
        with pyro.validation_enabled(False):
            result = Trainer(model, data, algorithm, settings_from(cfg), run_dir=run_dir, progress=progress,
                             seeds=[cfg.seed]).run()
        result.metrics["seed"] = cfg.seed
        if result.status == "nan":
            _mark_diverged(result.metrics, run_dir)
        if run_dir is not None:
            write_json(run_dir / "metrics.json", result.metrics)
            if plots:
                write_run_plots(result, data, run_dir)
    return result


def _train_m2(cfg: RunConfig, data: Dataset, run_dir: Path | None, plots: bool, progress: bool = False) -> TrainResult:
    """M2 on the engine (:func:`~pyrovae.inference.m2_training.train_m2`: ``epochs`` passes, batches of
    ``batch_size`` (App. D's 100 by default), ``lr``, γ, α, ELBO or IWAE with ``particles``, Lagging Inference
    for ``algorithm="lagging"``). The engine keeps its checkpoint in ``run_dir/training`` (every
    ``checkpoint_every`` epochs and at the end): an interrupted run resumes there, and a finished one asked
    for more ``epochs`` trains on from it; the run directory itself holds the finished run (its final
    weights), which is returned as it is when asked for the same ``epochs``."""
    from pyrovae.inference.m2_training import train_m2

    model = build_model(cfg, data)
    finished = _finished_run(model, run_dir, cfg.epochs)
    if finished is not None:
        return finished
    training = None if run_dir is None else run_dir / "training"
    fit = train_m2(model, data, _m2_objective(cfg), epochs=cfg.epochs, batch_size=cfg.batch_size or 100, lr=cfg.lr,
                   gamma=cfg.gamma, alpha=cfg.alpha, particles=cfg.particles, seed=cfg.seed,
                   lagging=cfg.algorithm == "lagging", run_dir=training, checkpoint_every=cfg.checkpoint_every,
                   progress=progress)
    return _m2_result(cfg, data, model, fit, run_dir, plots)


def _m2_objective(cfg: RunConfig) -> str:
    return "iwae" if cfg.elbo == "iwae" else "elbo"


def _m2_result(cfg: RunConfig, data: Dataset, model, fit, run_dir: Path | None, plots: bool) -> TrainResult:
    """A trained M2 run's metrics (−J per point on the training data, with draws seeded ``cfg.seed``) and its
    run directory (history, final weights, metrics, a plot of generated points)."""
    import pandas as pd

    from pyrovae.inference.m2_training import m2_objective

    history = pd.DataFrame(fit.history)
    metrics = {"status": "finished", "algorithm": cfg.algorithm, "model": "m2", "seed": cfg.seed, "resumed": fit.resumed,
               "sigma": float(model.sigma), "neg_elbo": m2_objective(model, data, _m2_objective(cfg), cfg.gamma,
                                                                      cfg.alpha, cfg.particles, seed=cfg.seed),
               "epochs": cfg.epochs, "wall_time": fit.seconds}
    if run_dir is not None:
        _write_finished(run_dir, model, history, metrics, {"epochs": cfg.epochs})
        if plots:
            from pyrovae.plots import plot_pairs

            plot_pairs(data.observed, model.sample(len(data))[0], data.condition, run_dir / "plots" / "samples.png",
                       "generated  x ~ p(x)")
    return TrainResult(model, history, metrics, "finished", run_dir)


def _train_m2_batch(cfgs: Sequence[RunConfig], outs: Sequence[str | Path], plots: bool, restart: bool = False,
                    batch_dir: str | Path | None = None, progress: bool = False) -> list[TrainResult]:
    """M2 configurations (one :func:`batch_key`) as one batch (:func:`~pyrovae.inference.m2_training.train_m2_batch`):
    run ``i`` starts from the weights :func:`train` builds for ``cfgs[i]`` and draws from a stream seeded
    ``cfgs[i].seed``, so it is that run up to float rounding. Each run directory is checked and locked as
    :func:`train` checks it (same settings, same data; ``restart`` discards what it holds); one that already
    holds a finished run is read back, the others train as one batch, whose engine checkpoint lives in
    ``batch_dir`` (every ``checkpoint_every`` epochs; a rerun of the same batch resumes there or trains on to
    more epochs, one of another set of runs starts afresh). A run whose loss turns non-finite comes back with
    status ``nan`` and no numbers; its directory keeps its history and no weights (:func:`train` raises
    there; a batch's other runs go on)."""
    import pandas as pd

    from pyrovae.inference.m2_training import train_m2_batch

    with contextlib.ExitStack() as locks:
        run_dirs = []
        for cfg, out in zip(cfgs, outs):  # every directory checked before any is written
            run_dir = prepare_run_dir(out)
            locks.enter_context(lock_run_dir(run_dir))
            if restart:
                discard_checkpoint(run_dir)
                discard_checkpoint(run_dir / "training")  # a run trained alone keeps its engine checkpoint there
            _check_same_config(run_dir, cfg)
            run_dirs.append(run_dir)
        runs = []
        for cfg, run_dir in zip(cfgs, run_dirs):
            pyro.set_rng_seed(cfg.seed)  # as train(): the seed, then the data, then the model's weights
            data = build_data(cfg)
            check_same_data(run_dir, data_digest(data.condition, data.observed))
            model = build_model(cfg, data)
            runs.append((cfg, data, model, run_dir, _finished_run(model, run_dir, cfg.epochs)))
        for cfg, run_dir in zip(cfgs, run_dirs):
            write_json(run_dir / "config.json", cfg.to_dict())
        todo = [run for run in runs if run[4] is None]
        first = cfgs[0]
        checkpoint = None if batch_dir is None or not todo else _m2_batch_checkpoint(batch_dir, [run[2] for run in todo])
        fits = train_m2_batch([run[2] for run in todo], todo[0][1], _m2_objective(first), epochs=first.epochs,
                              batch_size=first.batch_size or 100, lr=first.lr, gamma=first.gamma, alpha=first.alpha,
                              particles=first.particles, seeds=[run[0].seed for run in todo],
                              lagging=first.algorithm == "lagging", run_dir=checkpoint,
                              checkpoint_every=first.checkpoint_every, progress=progress) if todo else []
        trained = iter(fits)
        results = []
        for cfg, data, model, run_dir, finished in runs:
            fit = next(trained) if finished is None else None
            if fit is not None and fit.status == "nan":
                metrics = {"status": "nan", "algorithm": cfg.algorithm, "model": "m2", "seed": cfg.seed,
                           "resumed": fit.resumed, "sigma": None,
                           "neg_elbo": None, "epochs": cfg.epochs, "wall_time": fit.seconds, "checkpoint": None}
                history = pd.DataFrame(fit.history)
                discard_checkpoint(run_dir)  # the weights of an earlier, shorter run are not this run's
                write_text(run_dir / "history.csv", history.to_csv(index=False))
                write_json(run_dir / "metrics.json", metrics)
                results.append(TrainResult(model, history, metrics, "nan", run_dir))
                continue
            results.append(finished or _m2_result(cfg, data, model, fit, run_dir, plots))
    return results


def _m2_batch_checkpoint(batch_dir: str | Path, models: list) -> Path:
    """The directory of a batch of the M2 runs whose starting ``models`` these are, its checkpoint kept only when
    it holds that batch (the same starting models, in order): one of another set of runs (some finished since,
    or diverged, or more ``--reps``) is discarded, and the batch trains afresh, which gives what resuming would
    (the runs are deterministic)."""
    from pyrovae.inference.m2_training import starting_digests

    checkpoint = prepare_run_dir(batch_dir)
    if has_checkpoint(checkpoint):
        held = load_checkpoint(checkpoint)[1].get("settings", {}).get("models")
        if held != starting_digests(models):
            discard_checkpoint(checkpoint)
    return checkpoint


def _train_libi(cfg: RunConfig, data: Dataset, run_dir: Path | None) -> TrainResult:
    """LiBI (Yacoby, Pan & Doshi-Velez 2020, Sec. 2, App. D) through :class:`~pyrovae.inference.libi.LiBI`:
    ``rounds`` rounds, each ``max_steps / (2 rounds)`` Adam steps (``lr``) of the penalised
    likelihood of the codes and as many of the ELBO with θ fixed; the round with the best
    importance-sampled log-likelihood of the training data is kept (the user's file has no
    validation split). One checkpoint, at the end; a directory that holds it is returned as it is."""
    import pandas as pd

    from pyrovae.inference.libi import LiBI, LiBISettings

    model = build_model(cfg, data)
    finished = _finished_run(model, run_dir)
    if finished is not None:
        return finished
    per_phase = max(1, cfg.max_steps // (2 * cfg.rounds))
    settings = LiBISettings(rounds=cfg.rounds, step1_steps=per_phase, step2_steps=per_phase, lr=cfg.lr, seed=cfg.seed)
    start = time.perf_counter()
    with pyro.validation_enabled(False):
        fit = LiBI(model, settings).fit(data)
    with torch.no_grad():  # the final terms with the run's own draws, as the engine's runs report them
        terms = model.terms(data.condition.to(data.observed.dtype), data.observed,
                            torch.Generator().manual_seed(int(cfg.seed)))
    kl, recon = float(terms["kl"].mean()), float(terms["recon"].mean())
    history = pd.DataFrame(fit.history)
    metrics = {"status": "finished", "algorithm": "libi", "model": cfg.model, "seed": cfg.seed, "sigma": model.sigma,
               "kl": kl, "recon": recon, "neg_elbo": kl + recon, "log_lik": fit.val_log_lik, "best_round": fit.best_round,
               "rounds": cfg.rounds, "steps": 2 * per_phase * cfg.rounds, "wall_time": time.perf_counter() - start}
    if run_dir is not None:
        _write_finished(run_dir, model, history, metrics, {"rounds": cfg.rounds})
    return TrainResult(model, history, metrics, "finished", run_dir)


def _finished_run(model, run_dir: Path | None, epochs: int | None = None) -> TrainResult | None:
    """The run M2 or LiBI already finished in ``run_dir`` (its final checkpoint: the weights), read back into
    ``model``; None when there is none, or (M2) when it trained another number of ``epochs`` (``model`` is then
    left as it is, at its starting weights)."""
    if run_dir is None or not has_checkpoint(run_dir):
        return None
    import pandas as pd

    metrics = read_json(run_dir / "metrics.json")
    if metrics.get("status") != "finished" or (epochs is not None and metrics.get("epochs") != epochs):
        return None
    tensors, _ = load_checkpoint(run_dir)
    model.load_state_dict(tensors["models"]["0"])
    return TrainResult(model, pd.read_csv(run_dir / "history.csv"), metrics, "finished", run_dir)


def _write_finished(run_dir: Path, model, history, metrics: dict, state: dict) -> None:
    """A finished M2 or LiBI run's directory: history, the final weights (its checkpoint), metrics."""
    write_text(run_dir / "history.csv", history.to_csv(index=False))
    save_checkpoint(run_dir, {"models": {"0": model.state_dict()}}, {"status": "finished", **state})
    write_json(run_dir / "metrics.json", metrics)


#: What a run learned; meaningless when it diverged before its first block ended.
LEARNED = ("sigma", "kl", "recon", "neg_elbo", "sigma_sq_err", "sigma_rel_err")


def _mark_diverged(metrics: dict[str, Any], run_dir: Path | None) -> None:
    """Say where a diverged run left its last good state: ``checkpoint`` (a path, or ``None`` when it
    diverged before its first checkpoint). With no finished block, the numbers would describe the
    untrained model, so they are cleared rather than reported as a result."""
    ckpt = checkpoint_dir(run_dir) if run_dir is not None else None
    metrics["checkpoint"] = str(ckpt) if ckpt is not None else None
    if not metrics.get("blocks"):
        metrics.update(dict.fromkeys(LEARNED))


def _check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    """Resuming into a directory trained with other settings would mix two runs: refuse."""
    path = run_dir / "config.json"
    if not path.is_file() or not (has_checkpoint(run_dir) or has_checkpoint(run_dir / "training")):
        return  # (an M2 run keeps its checkpoint in training/ while it trains)
    old = read_json(path)
    ignore = {"device", "checkpoint_every", "threads"}
    if cfg.algorithm != "libi":  # the engine resumes under another cap (steps, M2's epochs); LiBI's cap is its length
        ignore |= {"max_steps", "epochs"}
    before = RunConfig().to_dict()  # a key an older version did not write had its default value
    held = old.get("epochs", before["epochs"])
    if cfg.model == "m2" and old.get("model") == "m2" and held > cfg.epochs:
        raise ConfigError(f"{run_dir} holds an M2 run of {held} epochs, more than the {cfg.epochs} asked for; "
                          "choose another --out (or --restart)")
    diff = sorted(k for k, v in cfg.to_dict().items() if k not in ignore and old.get(k, before[k]) != v)
    if diff:
        why = "; LiBI writes its one checkpoint at the end, so its run cannot resume" if cfg.algorithm == "libi" else ""
        raise ConfigError(f"{run_dir} holds a run with different settings ({', '.join(diff)}){why}; choose another "
                          "--out (or --restart)")


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[SigmaCVAE, Dataset, RunConfig]:
    """Rebuild the model of a run directory from its config and checkpoint (``weights_only=True``):
    the kind ``config.json`` names (``model``; a run written before kinds existed is a σ-CVAE). A
    directory without a config, or whose checkpoint does not fit the model, raises one line."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise DataError(f"{run_dir} is not a run directory (no config.json; train one with `pyrovae train --out`)")
    cfg = load_config(run_dir / "config.json", stored=True, device=device)
    data = build_data(cfg)
    model = build_model(cfg, data)
    tensors, _ = load_checkpoint(run_dir, map_location=device_name("device", device))
    try:
        model.load_state_dict(tensors["models"]["0"])
    except (KeyError, RuntimeError) as exc:
        raise DataError(f"{run_dir}: the checkpoint does not fit its {cfg.model} model "
                        f"({str(exc).splitlines()[0][:120]})") from None
    return model, data.to(device_name("device", device)), cfg


def _rep_worker(cfg_dict: dict, out: str, restart: bool) -> dict:
    return train(RunConfig(**cfg_dict), out=out, progress=False, restart=restart).metrics


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation over repetitions of each numeric metric."""
    out = {}
    for key in SUMMARY_KEYS:
        values = [float(r[key]) for r in rows if r.get(key) is not None and math.isfinite(float(r[key]))]
        if values:
            out[key] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "n": len(values)}
    return out


def train_reps(
    cfg: RunConfig, reps: int, jobs: int, out: str | Path, on_done: Callable[[int, dict], None] | None = None,
    vectorize: bool = True, progress: bool = False, restart: bool = False, executor: Executor | None = None,
) -> dict[str, Any]:
    """``reps`` runs with seeds derived from ``cfg.seed``, under ``out/rep-XX``.

    ``vectorize`` (default) trains them as one batched program in this process (replicate ``i``
    equals ``train(cfg.replace(seed=seeds[i]))``; the batch's checkpoint in ``out/checkpoint``
    makes a rerun resume); otherwise one :func:`train` per run on ``executor`` (default: ``jobs``
    spawned local processes, this process when ``jobs`` is 1; a :class:`~pyrovae.executors.DaskCluster`
    runs them on a Dask cluster). Writes ``summary.json`` and ``summary.md`` (mean ± sd over the
    runs that did not diverge; the diverged ones are listed under ``diverged``) and returns the
    summary. ``restart`` discards the checkpoints of an earlier run in ``out`` first."""
    cfg.validate()
    reps, jobs = integer_at_least("reps", reps), integer_at_least("jobs", jobs)
    out = prepare_run_dir(out)
    with lock_run_dir(out):
        if restart:
            discard_checkpoint(out)
        seeds = derive_seeds(cfg.seed, reps)
        if vectorize:
            rows = _train_vectorized(cfg, seeds, out, on_done, progress, restart)
        else:
            rows = [{} for _ in range(reps)]
            tasks = [{"cfg_dict": cfg.replace(seed=s).to_dict(), "out": str(out / f"rep-{i:02d}"), "restart": restart}
                     for i, s in enumerate(seeds)]
            with make_executor(jobs) if executor is None else contextlib.nullcontext(executor) as ex:  # we close only our own
                for done in ex.run(_rep_worker, tasks):
                    i = done.index
                    rows[i] = {"rep": i, "seed": seeds[i], **done.result}
                    if on_done is not None:
                        on_done(i, rows[i])
        healthy = [r for r in rows if r.get("status") != "nan"]
        summary = {"config": cfg.to_dict(), "reps": reps, "seeds": seeds, "vectorized": vectorize,
                   "summary": summarize(healthy), "diverged": [r["rep"] for r in rows if r.get("status") == "nan"],
                   "runs": [{k: v for k, v in r.items() if k != "settings"} for r in rows]}
        write_json(out / "summary.json", summary)
        write_text(out / "summary.md", summary_markdown(summary))
    return summary


#: Settings that may differ between the replicates of one batch (everything else is shared).
PER_REPLICATE = ("seed", "sigma0", "C", "calibration", "anneal_blocks", "cycles")


def batch_key(cfg: RunConfig) -> str:
    """Configurations with the same key can train as one batch (:func:`train_batch`)."""
    shared = {k: v for k, v in cfg.to_dict().items() if k not in PER_REPLICATE + ("threads", "checkpoint_every")}
    return json.dumps(shared, sort_keys=True)


def train_batch(cfgs: Sequence[RunConfig], outs: Sequence[str | Path], batch_dir: str | Path | None = None,
                progress: bool = False, plots: bool = True, restart: bool = False) -> list[TrainResult]:
    """Train ``cfgs`` (one :func:`batch_key`) as one batched program; write each run's directory
    ``outs[i]`` (config, metrics, history, final weights, plots) as :func:`train` would.

    Replicate ``i`` equals ``train(cfgs[i])``: it starts from the weights ``train`` would build
    (after ``pyro.set_rng_seed(seed)``) and draws from its own stream seeded with ``seed``. The
    batch's checkpoint lives in ``batch_dir`` (a rerun resumes there; locked while the batch trains). M2 batches through
    the M2 trainer (:func:`_train_m2_batch`; ``restart`` discards its runs' directories' checkpoints, as the
    batch's own is discarded by the caller).
    """
    cfgs = list(cfgs)
    for cfg in cfgs:
        cfg.validate()
        if cfg.algorithm == "libi":
            raise ConfigError("LiBI trains through its own loop, one run at a time: train each seed with train()")
    if len({batch_key(c) for c in cfgs}) != 1:
        raise ConfigError("configurations trained as one batch may differ only in " + ", ".join(PER_REPLICATE))
    torch.set_num_threads(cfgs[0].threads)
    if cfgs[0].model == "m2":
        return _train_m2_batch(cfgs, outs, plots, restart, batch_dir, progress)
    batch_dir = prepare_run_dir(batch_dir) if batch_dir is not None else None
    with lock_run_dir(batch_dir):
        data = build_data(cfgs[0])
        if batch_dir is not None:
            check_same_data(batch_dir, data_digest(data.condition, data.observed))
        models, algorithms = [], []
        for cfg in cfgs:
            pyro.set_rng_seed(cfg.seed)  # each replicate starts from the weights its single run would start from
            algorithms.append(build_algorithm(cfg))
            models.append(build_model(cfg, data, algorithms[-1]))
        with pyro.validation_enabled(False):
            results = Trainer(models, data, algorithms, settings_from(cfgs[0]), run_dir=batch_dir, progress=progress,
                              seeds=[cfg.seed for cfg in cfgs]).run()
        for i, (cfg, out, result) in enumerate(zip(cfgs, outs, results)):
            run_dir = prepare_run_dir(out)
            result.metrics["seed"] = cfg.seed
            write_json(run_dir / "config.json", cfg.to_dict())
            write_text(run_dir / "history.csv", result.history.to_csv(index=False))
            save_checkpoint(run_dir, {"models": {"0": result.model.state_dict()}},
                            {"status": result.status, "batch": str(batch_dir), "replicate": i})
            if result.status == "nan":  # as train(): where its last good state is; no numbers of an untrained model
                _mark_diverged(result.metrics, run_dir)
            write_json(run_dir / "metrics.json", result.metrics)
            if plots:
                write_run_plots(result, data, run_dir)
    return results


def _train_vectorized(cfg: RunConfig, seeds: list[int], out: Path, on_done, progress: bool,
                      restart: bool = False) -> list[dict]:
    """Every seed as one replicate of one batched run; each replicate's results in ``out/rep-XX``."""
    _check_same_config(out, cfg)
    write_json(out / "config.json", cfg.to_dict())
    results = train_batch([cfg.replace(seed=s) for s in seeds], [out / f"rep-{i:02d}" for i in range(len(seeds))],
                          batch_dir=out, progress=progress, restart=restart)
    rows = []
    for i, (seed, result) in enumerate(zip(seeds, results)):
        rows.append({"rep": i, "seed": seed, **result.metrics})
        if on_done is not None:
            on_done(i, rows[-1])
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    lines = [f"# {cfg['algorithm']} on {cfg['dataset']}: {summary['reps']} repetitions", "",
             "| metric | mean | sd |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']:.4g} | {v['sd']:.2g} |" for k, v in summary["summary"].items()]
    lines += ["", "| rep | seed | status | σ | KL | calibrations | wall time (s) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['rep']} | {r['seed']} | {r['status']} | {_number(r.get('sigma'), '.4f')} | "
              f"{_number(r.get('kl'), '.3f')} | {r.get('calibrations', '—')} | {r['wall_time']:.1f} |"
              for r in summary["runs"]]
    return "\n".join(lines) + "\n"


def _number(value: float | None, spec: str) -> str:
    """A run's number, or "—" where it has none (a run that diverged before its first block)."""
    return "—" if value is None else format(value, spec)
