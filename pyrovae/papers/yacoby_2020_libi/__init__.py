"""Yacoby, Pan & Doshi-Velez (2020), LiBI: Figure 1's landscape of the Cholesky model (:mod:`.figure1`) and
Table 1 (:mod:`.table1`).

Library code it uses: the data of App. E (:mod:`pyrovae.data.libi`), the Cholesky model and its closed forms
(:mod:`pyrovae.models.linear`, :mod:`pyrovae.posterior.exact`), LiBI itself (:mod:`pyrovae.inference.libi`).
"""
