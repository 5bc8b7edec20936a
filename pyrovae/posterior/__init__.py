r"""Ground-truth posteriors of a fixed decoder: exact, grid and HMC, with ArviZ diagnostics.

* :mod:`~pyrovae.posterior.target` — the per-point decoder likelihood every method works on;
* :mod:`~pyrovae.posterior.exact` — linear-Gaussian closed forms (Yacoby, Pan & Doshi-Velez 2020 App. C);
* :mod:`~pyrovae.posterior.grid` — quadrature for 1-D and 2-D latents, any decoder;
* :mod:`~pyrovae.posterior.nuts` — Pyro NUTS on the target as a Pyro program (chains in sequence), read by ``az.from_pyro``;
* :mod:`~pyrovae.posterior.batched_hmc` — one torch HMC per chain and point, Pyro's dual averaging and Welford;
* :mod:`~pyrovae.posterior.initial` — where the samplers start;
* :mod:`~pyrovae.posterior.crosscheck` — draws against a grid (catches a wrong mode);
* :mod:`~pyrovae.posterior.arviz_adapter` — complete ArviZ objects (layout there), netCDF, diagnostics table;
* :mod:`~pyrovae.posterior.compare` — KL(q‖p) per point (Yacoby, Pan & Doshi-Velez 2021, Eq. 3), aggregate MMD;
* :mod:`~pyrovae.posterior.figures` — q beside the posterior, trace and rank plots;
* :mod:`~pyrovae.posterior.report` — one call from a trained model to files and diagnostics.
"""

from pyrovae.posterior.arviz_adapter import (
    diagnostics_summary,
    diagnostics_table,
    from_arviz,
    load_netcdf,
    save_netcdf,
    to_arviz,
)
from pyrovae.posterior.compare import (
    aggregate_posterior_mmd,
    elbo_per_point,
    log_evidence_from_samples,
    posterior_kl,
)
from pyrovae.posterior.figures import plot_q_vs_posterior, write_trace_and_rank
from pyrovae.posterior.crosscheck import CrossCheck, effective_sample_size, grid_crosscheck
from pyrovae.posterior.exact import LinearGaussian, gaussian_kl, linearize, pedagogical_case1, pedagogical_case2
from pyrovae.posterior.grid import GridPosterior, GridWarning, grid_posterior
from pyrovae.posterior.batched_hmc import batched_hmc
from pyrovae.posterior.initial import initial_latents
from pyrovae.posterior.nuts import latent_model, nuts_posterior
from pyrovae.posterior.report import METHODS, PosteriorReport, posterior_report
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import LatentTarget, model_target, select_points

__all__ = [
    "LatentTarget", "model_target", "select_points",
    "LinearGaussian", "gaussian_kl", "linearize", "pedagogical_case1", "pedagogical_case2",
    "GridPosterior", "GridWarning", "grid_posterior",
    "PosteriorSamples", "batched_hmc", "initial_latents", "latent_model", "nuts_posterior",
    "CrossCheck", "effective_sample_size", "grid_crosscheck",
    "to_arviz", "from_arviz", "save_netcdf", "load_netcdf", "diagnostics_table", "diagnostics_summary",
    "elbo_per_point", "log_evidence_from_samples", "posterior_kl", "aggregate_posterior_mmd",
    "plot_q_vs_posterior", "write_trace_and_rank",
    "METHODS", "PosteriorReport", "posterior_report",
]
