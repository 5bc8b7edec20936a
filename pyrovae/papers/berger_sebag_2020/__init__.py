"""Berger & Sebag (2020), the decoder variance: Table 1 on the 2-D manifold (:mod:`.table1`), Theorem 1's
hypersphere (:mod:`.sphere`), Fig. 2 and the collapse diagram (:mod:`.figures`).

Library code it uses: the closed forms of :mod:`pyrovae.theory.hypersphere`, the observation models of
:mod:`pyrovae.models.noise`, the manifold data of :mod:`pyrovae.data.manifolds`.
"""
