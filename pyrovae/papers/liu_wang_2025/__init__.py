"""Liu & Wang (2025), the Calibrated Robust σ-CVAE: two-moon Tables 1-2 (:mod:`.two_moon`), Figures 1, 3
and 5 (:mod:`.figures`), Table 3's conditional densities (:mod:`.conditional_density`), Table 4 on UCI
(:mod:`.uci`), App. I on MNIST (:mod:`.mnist`), App. E's σ inflation (:mod:`.appendix_e`), and our
robustness sweep of Algorithm 1 across noise levels (:mod:`.calibration_robustness`).

The model, the analytic σ (Eq. 10) and the calibration (Eq. 15, Algorithm 1) are library code:
:mod:`pyrovae.models.cvae`, :mod:`pyrovae.inference.algorithms`, :mod:`pyrovae.inference.calibration`.
"""
