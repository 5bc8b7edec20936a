"""Which model kind, observation model, algorithm and ELBO go together, and why the others do not.

:func:`check_combination` is what :meth:`pyrovae.config.RunConfig.validate` calls last: each
combination that makes no sense raises a :class:`~pyrovae.errors.ConfigError` whose one line says
why (the CLI prints it with exit 2). Checks that need the data (M2's labels, the linear models'
widths) are made where the data are built (:func:`pyrovae.api.build_model`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyrovae.errors import ConfigError
from pyrovae.inference.catalog import make_algorithm

if TYPE_CHECKING:
    from pyrovae.config import RunConfig

__all__ = ["check_combination", "check_settings_apply", "unused_settings", "LEARNED_NOISES", "TIED_ALGORITHMS"]

#: Observation models whose σ moves by gradient (joint SVI, Berger & Sebag's LS / LV-VAE).
LEARNED_NOISES = ("learned", "learned-vector", "head", "network")
#: Algorithms that leave the observation noise as the model makes it (M2's fixed σ_ε, tied noise).
TIED_ALGORITHMS = ("fixed", "lagging")


def check_combination(cfg: "RunConfig") -> None:
    """Refuse, with the reason, a combination of ``cfg.model``, ``noise``, ``algorithm`` and ``elbo``
    that cannot train (``cfg`` already has its defaults filled in). A setting the run would ignore is
    :func:`check_settings_apply`'s."""
    kind = cfg.model
    if cfg.algorithm == "libi":
        _check_libi(cfg)
        return
    if kind in ("cvae", "vae"):
        _check_noise(cfg)
    elif kind == "m2":
        if cfg.noise not in (None, "fixed"):
            raise ConfigError(f"M2 keeps its observation σ fixed (Yacoby, Pan & Doshi-Velez 2021, App. D; set it "
                              f"with --sigma0); --noise {cfg.noise} does not apply")
        if cfg.algorithm not in TIED_ALGORITHMS:
            raise ConfigError(f"M2 trains by joint SVI with its σ fixed (--algorithm fixed) or by Lagging Inference "
                              f"Networks (--algorithm lagging); {cfg.algorithm!r} moves a σ-CVAE's σ")
        if cfg.elbo == "meanfield":
            raise ConfigError("M2 sums its unlabelled points' label out exactly (TraceEnum_ELBO) or bounds it by "
                              "IWAE: use --elbo trace or --elbo iwae")
        if cfg.device != "cpu":
            raise ConfigError("the M2 trainer runs on the CPU: use --device cpu")
        if cfg.algorithm == "lagging" and cfg.elbo == "iwae":
            raise ConfigError("M2's Lagging Inference measures I(x; z) under the ELBO's q(z|x); "
                              "use --elbo trace with --algorithm lagging")
    else:
        name = "scalar linear" if kind == "linear" else "Cholesky"
        if cfg.noise is not None:
            raise ConfigError(f"the {name} model's noise is tied to its decoder (Yacoby, Pan & Doshi-Velez 2020, "
                              f"App. C; σ_ε is --sigma0); --noise {cfg.noise} does not apply")
        if cfg.algorithm not in TIED_ALGORITHMS:
            raise ConfigError(f"the {name} model's noise is tied to its decoder, so no algorithm may set it: use "
                              f"--algorithm fixed (joint SVI) or lagging, not {cfg.algorithm!r}")
        if kind == "linear" and cfg.latent_dim != 1:
            raise ConfigError("the scalar linear model x = θz + ε (Yacoby, Pan & Doshi-Velez 2020, App. C.1) has one "
                              f"latent dimension; got latent_dim = {cfg.latent_dim}")


#: settings of the block trainer (:class:`~pyrovae.inference.trainer.TrainSettings`) that M2's and
#: LiBI's own loops do not read, with their flags (checkpoint_every: a config-file key only)
_BLOCK_SETTINGS = {"K": "-K", "tol": "--tol", "convergence": "--convergence", "checkpoint_every": "checkpoint_every"}


def unused_settings(model: str, algorithm: str, calibration: str) -> dict[str, tuple[str, str]]:
    """The run settings that ``model`` trained by ``algorithm`` (and ``calibration``) does not read:
    name → (its flag or config key, who ignores it). Given at anything but their default they would
    be ignored, so :func:`check_settings_apply` refuses them."""
    unused: dict[str, tuple[str, str]] = {}
    if model != "m2":
        labels = f"weights M2's labelled points (Yacoby, Pan & Doshi-Velez 2021, Eq. 5); model {model!r} has no labels"
        unused |= {"gamma": ("--gamma", f"gamma {labels}"), "alpha": ("--alpha", f"alpha {labels}"),
                   "epochs": ("--epochs", f"epochs count M2's passes over the data; model {model!r} trains in "
                                          "blocks (use --max-steps)")}
    if algorithm != "libi":
        unused["rounds"] = ("--rounds", f"rounds count LiBI's rounds (Yacoby, Pan & Doshi-Velez 2020, App. D); "
                                        f"algorithm {algorithm!r} has none")
    if model == "m2":
        who = "M2 trains --epochs passes (Yacoby, Pan & Doshi-Velez 2021, App. D)"
        unused |= {name: (flag, who) for name, flag in {**_BLOCK_SETTINGS, "max_steps": "--max-steps"}.items()
                   if name != "checkpoint_every"}  # M2 keeps a checkpoint every checkpoint_every epochs
    elif algorithm == "libi":
        who = "LiBI trains its two phases on all the data, --max-steps split over --rounds (Yacoby, Pan & Doshi-Velez 2020, App. D)"
        unused |= {name: (flag, who) for name, flag in {**_BLOCK_SETTINGS, "batch_size": "--batch-size"}.items()}
    if algorithm != "calibrated":  # (``calibration``, the variant, may stay set: a base setting of several runs)
        unused["C"] = ("-C", f"algorithm {algorithm!r} does not calibrate")
    elif calibration == "robust":
        unused["C"] = ("-C", "the robust calibration has no tolerance C (it keeps a calibration by its ELBO gain; "
                             "docs/RESULTS.md); Liu & Wang's C is --calibration paper or code")
    if algorithm not in ("monotonic", "cyclical"):
        unused["anneal_blocks"] = ("anneal_blocks", f"algorithm {algorithm!r} does not anneal β")
    if algorithm != "cyclical":
        unused["cycles"] = ("cycles", f"algorithm {algorithm!r} has no annealing cycles")
    return unused


def check_settings_apply(cfg: "RunConfig") -> None:
    """Refuse a setting that ``cfg``'s model and algorithm would ignore (:func:`unused_settings`):
    ``train --model m2 --max-steps 10`` trained 100 epochs, ``--algorithm joint -C 0.5`` joint SVI,
    without a word."""
    for name, (flag, who) in unused_settings(cfg.model, cfg.algorithm, cfg.calibration).items():
        if getattr(cfg, name) != getattr(type(cfg), name):  # the field's default
            raise ConfigError(f"{who}; {flag} does not apply")


def _check_libi(cfg: "RunConfig") -> None:
    """LiBI (Yacoby, Pan & Doshi-Velez 2020) fits an unconditional VAE whose noise it does not learn."""
    if cfg.model not in ("vae", "linear", "cholesky"):
        raise ConfigError(f"LiBI fits an unconditional VAE with the noise fixed (Yacoby, Pan & Doshi-Velez 2020, "
                          f"Sec. 2): use --model vae, linear or cholesky, not {cfg.model}")
    if cfg.model == "vae" and cfg.noise not in (None, "fixed"):
        raise ConfigError(f"LiBI keeps the observation noise fixed at --sigma0 (Yacoby, Pan & Doshi-Velez 2020, "
                          f"App. E); --noise {cfg.noise} does not apply")
    if cfg.model != "vae" and cfg.noise is not None:
        raise ConfigError(f"the {cfg.model} model's noise is tied to its decoder; --noise {cfg.noise} does not apply")
    if cfg.elbo != "trace" or cfg.particles != 1:
        raise ConfigError("LiBI's inference phase maximises the ELBO (Eq. 45-46): use --elbo trace with one particle")
    if cfg.device != "cpu":
        raise ConfigError("LiBI runs on the CPU: use --device cpu")


def _check_noise(cfg: "RunConfig") -> None:
    """The σ-(C)VAE's ``--noise`` against what its algorithm does with σ."""
    if cfg.noise is None:
        return
    need = make_algorithm(cfg.algorithm, cfg.C, cfg.calibration, cfg.anneal_blocks, cfg.cycles).noise
    if need == "learned" and cfg.noise not in LEARNED_NOISES:
        raise ConfigError(f"algorithm {cfg.algorithm!r} learns σ by gradient (joint SVI): use --noise "
                          f"{', '.join(LEARNED_NOISES)}, or --algorithm fixed to keep a {cfg.noise} σ")
    if need == "calibrated" and cfg.noise != "calibrated":
        raise ConfigError(f"algorithm {cfg.algorithm!r} sets σ from the residuals (Liu & Wang 2025, Eq. 10): it needs "
                          f"--noise calibrated, not {cfg.noise}")
    if need == "fixed" and cfg.noise != "fixed":
        raise ConfigError(f"algorithm 'fixed' keeps σ at --sigma0: it needs --noise fixed, not {cfg.noise}")
