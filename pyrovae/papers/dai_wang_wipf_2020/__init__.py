"""Dai, Wang & Wipf (2020), the VAE's local minima: the soft-threshold local minimum of Proposition 1
(:mod:`.local_minimum`), the bound on γ of Sec. 5.1 / Eq. (10) (:mod:`.gamma_bound`) and the depth study of
Sec. 6 (:mod:`.depth`).

Library code it uses: the closed forms of :mod:`pyrovae.theory.soft_threshold`, the MNIST loader
:mod:`pyrovae.data.mnist`.
"""
