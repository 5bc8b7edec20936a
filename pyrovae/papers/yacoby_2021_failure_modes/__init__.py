"""Yacoby, Pan & Doshi-Velez (2021), failure modes of VAEs: the unsupervised Tables 1-2, App. E.2 and the
Spiral-Dots noise of Sec. 8 (:mod:`.unsupervised`, figures in :mod:`.unsupervised_figures`, generating
networks of App. G in :mod:`.surrogate_networks`), and the semi-supervised M2 Tables 3-6
(:mod:`.m2_semicircles`, :mod:`.m2_sweep`, :mod:`.m2_real`, figures in :mod:`.m2_figures`).

Library code it uses: the data of App. G and H (:mod:`pyrovae.data.yacoby_unsupervised`,
:mod:`pyrovae.data.yacoby_m2`), M2 (:mod:`pyrovae.models.m2`, :mod:`pyrovae.inference.m2_training`), the
metrics (:mod:`pyrovae.metrics.two_sample`, :mod:`pyrovae.metrics.semisupervised`).
"""
