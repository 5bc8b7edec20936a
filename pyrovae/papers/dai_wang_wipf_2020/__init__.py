"""Dai, Wang & Wipf (2020), the VAE's local minima: the soft-threshold local minimum, the bound on γ
(Prop. 2 / Eq. 10) and the depth study (:mod:`.experiments`).

Library code it uses: the closed forms of :mod:`pyrovae.theory.soft_threshold`.
"""
