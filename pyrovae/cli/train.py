"""``pyrovae train``: one run, or ``--reps`` runs as one batched program, from flags and/or a config file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from pyrovae.cli.common import chosen_threads, cli_errors, console, fail

if TYPE_CHECKING:
    from pyrovae.config import RunConfig

__all__ = ["train_command", "report_run", "run_from_config"]


def report_run(result, out: Path, title: str) -> None:
    m = result.metrics
    if result.status == "nan":
        _report_diverged(m)
    if m.get("model") == "m2":
        _report_m2(m, out, title)
        return
    if m.get("algorithm") == "libi":
        _report_libi(m, out, title)
        return
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("status", "σ", "true σ", "KL", "−ELBO", "cal.", "steps", "time"):
        table.add_column(col, justify="right", no_wrap=True)
    true = m.get("true_sigma")
    table.add_row(
        m["status"], f"{m['sigma']:.4f}", "—" if true is None else f"{true:g}", f"{m['kl']:.3f}",
        f"{m['neg_elbo']:.3f}", str(m["calibrations"]), str(m["steps"]), f"{m['wall_time']:.0f} s",
    )
    table.caption = escape("σ: decoder scale; KL: mean KL[q(z|x,y) ‖ p(z)]; −ELBO: per point; cal.: calibrations")
    console.print(table)
    console.print(f"run directory: [bold]{out}[/] (plots in {out / 'plots'})")


def _report_m2(m: dict, out: Path, title: str) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("status", "σ_ε", "−J per point", "epochs", "time"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row(m["status"], f"{m['sigma']:.4g}", f"{m['neg_elbo']:.3f}", str(m["epochs"]), f"{m['wall_time']:.0f} s")
    table.caption = escape("−J: minus Eq. 5 of Yacoby, Pan & Doshi-Velez (2021) per point, labelled and unlabelled")
    console.print(table)
    console.print(f"run directory: [bold]{out}[/]")


def _report_libi(m: dict, out: Path, title: str) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    for col in ("status", "σ", "KL", "−ELBO", "log p(x)", "best round", "steps", "time"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row(m["status"], f"{m['sigma']:.4g}", f"{m['kl']:.3f}", f"{m['neg_elbo']:.3f}", f"{m['log_lik']:.3f}",
                  f"{m['best_round'] + 1} of {m['rounds']}", str(m["steps"]), f"{m['wall_time']:.0f} s")
    table.caption = escape("per point; log p(x): importance-sampled, the measure LiBI keeps its best round by")
    console.print(table)
    console.print(f"run directory: [bold]{out}[/]")


def _report_diverged(m: dict) -> None:
    """One line that says where the last good state is, if anywhere; exit 1."""
    if m.get("checkpoint"):
        fail(f"training diverged (NaN or infinite loss) after step {m['steps']}; the last good checkpoint is kept in "
             f"{m['checkpoint']}", 1)
    if m.get("blocks"):
        fail(f"training diverged (NaN or infinite loss) after step {m['steps']}, before its first checkpoint; "
             "nothing was saved to resume from", 1)
    fail("training diverged (NaN or infinite loss) in its first block; nothing was learned or saved "
         "(check the data's scale, or lower --lr)", 1)


def _report_reps(summary: dict, out: Path) -> None:
    if len(summary["diverged"]) == summary["reps"]:
        fail(f"every repetition diverged (NaN or infinite loss); see {out / 'summary.md'}", 1)
    table = Table(title=f"{summary['reps']} repetitions (mean ± sd)", header_style="bold")
    table.add_column("metric")
    table.add_column("mean ± sd", justify="right")
    for key, v in summary["summary"].items():
        table.add_row(key, f"{v['mean']:.4g} ± {v['sd']:.2g}")
    console.print(table)
    console.print(f"summary: [bold]{out / 'summary.md'}[/], per-run directories {out}/rep-XX")
    if summary["diverged"]:
        names = ", ".join(f"rep-{i:02d}" for i in summary["diverged"])
        fail(f"{len(summary['diverged'])} of {summary['reps']} repetitions diverged and are left out of the summary: "
             f"{names}", 1)


def run_from_config(cfg: RunConfig, out: Path, reps: int, jobs: int, quiet: bool, title: str,
                    vectorize: bool = True, restart: bool = False) -> None:
    from pyrovae.api import train, train_reps  # the library is imported only when a command runs

    if reps == 1:
        result = train(cfg, out=out, progress=not quiet, restart=restart)
        report_run(result, out, title)
        return
    if vectorize:
        _report_reps(train_reps(cfg, reps, jobs, out, vectorize=True, progress=not quiet, restart=restart), out)
        return
    columns = (TextColumn("[bold]repetitions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=quiet, console=console) as bar:
        task = bar.add_task("reps", total=reps)
        summary = train_reps(cfg, reps, jobs, out, on_done=lambda i, row: bar.advance(task), vectorize=False,
                             restart=restart)
    _report_reps(summary, out)


@cli_errors
def train_command(
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or TOML file of settings; flags override it."),
    model: Optional[str] = typer.Option(
        None, help="cvae (σ-CVAE, default) | vae (unconditional: every column modelled) | m2 (semi-supervised: a "
        "'label' column, empty = unlabelled) | linear | cholesky (Yacoby, Pan & Doshi-Velez 2020, App. C)."),
    noise: Optional[str] = typer.Option(
        None, help="σ-(C)VAE observation model: fixed | calibrated | learned | learned-vector | head (σ(z) as a "
        "second decoder head, Berger & Sebag's LV-VAE) | network (σ(z) from a separate network) (default: what "
        "--algorithm needs)."),
    dataset: Optional[str] = typer.Option(None, help="Registered data set (see `pyrovae datasets list`)."),
    data_file: Optional[str] = typer.Option(
        None, help="CSV (header row) or .npy file instead of a generator: cvae reads x1..xp,y1..yq; vae, linear, "
        "cholesky model every column; m2 needs a 'label' column (.npy: the last), empty/NaN where unlabelled."),
    x_cols: Optional[str] = typer.Option(None, "--x-cols", help="The data file's conditioning columns, by name "
                                         "(comma-separated; default: every column not a response)."),
    y_cols: Optional[str] = typer.Option(None, "--y-cols", help="The data file's response columns, by name "
                                         "(default: those named y, y1, y2, …, else the last)."),
    n: Optional[int] = typer.Option(None, help="Number of generated points."),
    tau: Optional[float] = typer.Option(None, help="Noise level of the generator (two-moon: the true σ)."),
    data_seed: Optional[int] = typer.Option(None, help="Seed of the data generator."),
    algorithm: Optional[str] = typer.Option(None, help="joint (θ, φ, σ by joint SVI) | analytic (Liu & Wang's Vanilla) | calibrated | monotonic | cyclical | fixed | lagging | lagging-segments | libi (LiBI; --model vae, linear or cholesky)"),
    k: Optional[int] = typer.Option(None, "-K", "--inner-steps", help="Gradient steps per block (K)."),
    c: Optional[float] = typer.Option(None, "-C", "--tolerance", help="Calibration tolerance C on the mean KL (--calibration paper or code)."),
    calibration: Optional[str] = typer.Option(
        None, help="robust (default; ours: scale-free plateau, calibration judged by the ELBO gain, status collapsed "
        "after a budget, importance-weighted polish and final σ; no -C) | paper (Liu & Wang's Algorithm 1: "
        "φ ~ N(0, S), S grows) | code (their public code: φ = 0.5 N(0,1))"
    ),
    sigma0: Optional[float] = typer.Option(None, help="Initial decoder σ."),
    elbo: Optional[str] = typer.Option(None, help="trace | meanfield | iwae"),
    particles: Optional[int] = typer.Option(None, help="ELBO particles (IWAE's S)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate."),
    max_steps: Optional[int] = typer.Option(None, help="Hard cap on gradient steps."),
    tol: Optional[float] = typer.Option(None, help="Convergence threshold on the mean loss change per block."),
    convergence: Optional[str] = typer.Option(
        None, help="block-mean (loss averaged over the K-block) | last-step (the public code's rule)."
    ),
    batch_size: Optional[int] = typer.Option(None, help="Mini-batch size (default: full batch)."),
    latent_dim: Optional[int] = typer.Option(None, help="Latent dimension d (default: 2; m2, linear: 1; "
                                             "cholesky: the data's width)."),
    encoder_widths: Optional[str] = typer.Option(None, help="Hidden widths of the encoder, e.g. 50,50,50 (m2: of "
                                                 "every network)."),
    decoder_widths: Optional[str] = typer.Option(None, help="Hidden widths of the decoder, e.g. 2,4,16,4."),
    activation: Optional[str] = typer.Option(None, help="Hidden activation (tanh, relu, leaky_relu, ...)."),
    gamma: Optional[float] = typer.Option(None, help="M2: weight γ of the labelled points (Eq. 5)."),
    alpha: Optional[float] = typer.Option(None, help="M2: weight α of the classifier term (Eq. 5)."),
    epochs: Optional[int] = typer.Option(None, help="M2: passes over the unlabelled points (default 100)."),
    rounds: Optional[int] = typer.Option(None, help="LiBI: rounds R; --max-steps is split over their two phases "
                                         "(default 1)."),
    seed: Optional[int] = typer.Option(None, help="Root seed of the run (and of the repetitions)."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads per run (default: `pyrovae --threads`, else 1)."),
    out: Optional[str] = typer.Option(None, help="Run directory (default runs/<algorithm>-<dataset>-s<seed>)."),
    reps: int = typer.Option(1, help="Repetitions with seeds derived from --seed."),
    jobs: int = typer.Option(1, help="Parallel processes for --reps with --no-vectorize."),
    vectorize: bool = typer.Option(True, help="Train the --reps seeds as one batched program (--no-vectorize: "
                                   "one process per run)."),
    restart: bool = typer.Option(False, "--restart", help="Discard a checkpoint already in --out and start over."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Train a model (σ-CVAE by default; --model); resume if --out already holds a checkpoint of the same
    settings (--restart: start over)."""
    from pyrovae.config import load_config
    from pyrovae.model_kinds import MODEL_KINDS
    from pyrovae.errors import ConfigError
    from pyrovae.validation import MAX_UNITS, integer_at_least, out_path

    reps, jobs = integer_at_least("--reps", reps, 1, MAX_UNITS), integer_at_least("--jobs", jobs, 1, MAX_UNITS)
    cfg = load_config(
        config, model=model, noise=noise, dataset=dataset, data_file=data_file, x_cols=x_cols, y_cols=y_cols,
        n=n, tau=tau, data_seed=data_seed,
        algorithm=algorithm, K=k, C=c, calibration=calibration, sigma0=sigma0, elbo=elbo, particles=particles, lr=lr,
        max_steps=max_steps, tol=tol, convergence=convergence, batch_size=batch_size, latent_dim=latent_dim,
        encoder_widths=_widths("--encoder-widths", encoder_widths), decoder_widths=_widths("--decoder-widths", decoder_widths),
        activation=activation, gamma=gamma, alpha=alpha, epochs=epochs, rounds=rounds, seed=seed, device=device,
        threads=threads if threads is not None else chosen_threads(),
    )
    if cfg.algorithm == "libi" and reps > 1:
        raise ConfigError("LiBI trains one run at a time: use one --seed per run instead of --reps")
    source = Path(cfg.data_file).stem if cfg.data_file else cfg.dataset
    kind = "" if cfg.model == "cvae" else f"{cfg.model}-"
    out = Path(out_path("--out", out)) if out is not None else Path("runs") / f"{kind}{cfg.algorithm}-{source}-s{cfg.seed}"
    run_from_config(cfg, out, reps, jobs, quiet, f"{cfg.algorithm} {MODEL_KINDS[cfg.model].title} (K = {cfg.K})"
                    if cfg.model != "m2" else f"M2 ({cfg.algorithm}, {cfg.epochs} epochs)", vectorize, restart)


def _widths(flag: str, value: str | None) -> list | None:
    """``"50,50,50"`` → ``[50, 50, 50]`` (checked by the config); ``""`` → no hidden layer."""
    if value is None:
        return None
    from pyrovae.errors import ConfigError

    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers such as 50,50,50, got {value!r}") from None
