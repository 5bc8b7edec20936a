"""The remedies the papers support, as changes to a run's configuration, and the exact
``pyrovae train`` command that applies one to the run being diagnosed.

A remedy is a :class:`~pyrovae.diagnosis.findings.Remedy`: text with its source and the
:class:`~pyrovae.config.RunConfig` fields it changes. :func:`remedy_config` applies it (the kind's
defaults fill what it resets), :func:`train_command` writes the command line of that configuration
with the run's own data and settings, into ``RUN_DIR-fix-NAME``.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from pyrovae.diagnosis.findings import Remedy

__all__ = ["calibrate", "learn_sigma", "iwae", "lagging", "train_longer", "robust_calibration", "conditional_guide",
           "remedy_config", "train_command", "fix_dir"]


def calibrate(cfg) -> Remedy:
    return Remedy("calibrate", "set σ from the residuals after every block and calibrate it while the KL is below C "
                  "(Liu & Wang 2025, Algorithm 1: the Calibrated Robust σ-CVAE)",
                  {"algorithm": "calibrated", "noise": None})


def learn_sigma(cfg) -> Remedy:
    return Remedy("learn-sigma", "learn σ with the networks instead of fixing it (Berger & Sebag 2020's LS-VAE; "
                  "Dai, Wang & Wipf 2020: learning γ avoids category (ii) collapse)",
                  {"algorithm": "joint", "noise": "learned"})


def iwae(cfg) -> Remedy:
    return Remedy("iwae", "train with the importance-weighted bound, which weakens the posterior-matching term "
                  "that biases the ELBO's optimum (Yacoby, Pan & Doshi-Velez 2021, Sec. 5; Burda et al. 2016)",
                  {"elbo": "iwae", "particles": max(10, int(cfg.particles))})


def lagging(cfg) -> Remedy:
    return Remedy("lagging", "let the encoder catch up with the decoder before each decoder step "
                  "(Lagging Inference Networks, He et al. 2019; a baseline of Yacoby, Pan & Doshi-Velez 2021)",
                  {"algorithm": "lagging", "noise": None if cfg.noise in (None, "calibrated", "fixed") else cfg.noise})


def train_longer(cfg) -> Remedy:
    field = "epochs" if cfg.model == "m2" else "max_steps"
    value = 4 * int(getattr(cfg, field))
    return Remedy("train-longer", f"the run stopped at its step cap before it converged: train ×4 longer "
                  f"({field} = {value})", {field: value})


def robust_calibration(cfg) -> Remedy:
    return Remedy("robust-calibration", "the paper's calibration did not leave the collapsed solution: try this "
                  "library's robust variant (scale-free plateau test, calibrations judged by their ELBO gain; "
                  "docs/RESULTS.md)", {"algorithm": "calibrated", "calibration": "robust", "noise": None})


def conditional_guide(cfg) -> Remedy:
    return Remedy("iwae", "M2's factorised q(y|x) q(z|x) cannot fit the bimodal p(z|x), so the ELBO prefers a "
                  "decoder that ignores y (Yacoby, Pan & Doshi-Velez 2021, Sec. 7); their remedy is a bound that "
                  "weakens posterior matching: IWAE (it learns distinct p(x|y) at the price of a worse p(x))",
                  {"elbo": "iwae", "particles": max(10, int(cfg.particles)), "algorithm": "fixed"})


def remedy_config(cfg, remedy: Remedy):
    """``cfg`` with the remedy's changes, validated (a ``None`` change restores the kind's default).
    Settings the remedied run would not read (a paper calibration's C when the remedy learns σ, say)
    go back to their defaults (:func:`~pyrovae.combinations.unused_settings`)."""
    from pyrovae.combinations import unused_settings
    from pyrovae.config import RunConfig

    values = {**cfg.to_dict(), **remedy.changes}
    if "algorithm" in remedy.changes and cfg.model in ("cvae", "vae"):
        values.setdefault("noise", None)
    for name in unused_settings(values["model"], values["algorithm"], values["calibration"]):
        if name not in remedy.changes:
            values[name] = getattr(RunConfig, name)  # the field's default
    return RunConfig(**values).validate()


def fix_dir(run_dir: str | Path, remedy: Remedy) -> Path:
    """Where a remedy's run goes: beside the diagnosed run, ``RUN_DIR-fix-NAME``."""
    run_dir = Path(run_dir)
    return run_dir.parent / f"{run_dir.name}-fix-{remedy.name}"


#: RunConfig field -> the `pyrovae train` flag that sets it (fields without a flag are left out).
_FLAGS = {"model": "--model", "noise": "--noise", "dataset": "--dataset", "data_file": "--data-file", "n": "--n",
          "tau": "--tau", "data_seed": "--data-seed", "latent_dim": "--latent-dim",
          "encoder_widths": "--encoder-widths", "decoder_widths": "--decoder-widths", "activation": "--activation",
          "sigma0": "--sigma0", "algorithm": "--algorithm", "K": "-K", "C": "-C", "calibration": "--calibration",
          "elbo": "--elbo", "particles": "--particles", "lr": "--lr", "max_steps": "--max-steps", "tol": "--tol",
          "convergence": "--convergence", "batch_size": "--batch-size", "seed": "--seed", "gamma": "--gamma",
          "alpha": "--alpha", "epochs": "--epochs"}


def _flag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def train_command(cfg, out: str | Path, keep=()) -> str:
    """The ``pyrovae train`` line that trains ``cfg`` into ``out``: every flag whose value differs from
    what the command would choose by itself, and those of the fields ``keep`` names (a remedy's changes,
    spelled out even where they are the default)."""
    from pyrovae.config import RunConfig

    default = RunConfig(model=cfg.model, dataset=cfg.dataset, data_file=cfg.data_file).validate()
    if cfg.model == "cholesky" and cfg.latent_dim is None:
        default.latent_dim = None
    parts = ["pyrovae", "train"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        flag = _FLAGS.get(f.name)
        if flag is None or value is None:
            continue
        if f.name in ("model", "dataset", "data_file", *keep) or value != getattr(default, f.name):
            if f.name == "dataset" and cfg.data_file is not None:
                continue
            if f.name == "model" and value == "cvae":
                continue
            parts += [flag, _flag_value(value)]
    parts += ["--out", str(out)]
    return " ".join(shlex.quote(p) for p in parts)
