"""Yacoby, Pan & Doshi-Velez (2020), LiBI: Figure 1's landscape and Table 1 (:mod:`.experiments`).

Library code it uses: the data of App. E (:mod:`pyrovae.data.libi`), the Cholesky model
(:mod:`pyrovae.models.linear`), LiBI itself (:mod:`pyrovae.inference.libi`).
"""
