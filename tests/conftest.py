"""Test hygiene shared by the whole suite (as Pyro's own tests): one thread, a clean
parameter store, validation on, and a fixed seed before every test."""

from __future__ import annotations

import pyro
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def pyro_hygiene():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
