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


@pytest.fixture
def interrupt_at_block(monkeypatch):
    """``arm(cls, method, block)`` makes ``cls.method`` (one block of a training-engine family) raise
    ``KeyboardInterrupt`` when the engine's block counter reaches ``block`` — a run killed there, after the
    checkpoint of the block before; it returns ``disarm()``, which puts the method back."""
    def arm(cls, method: str, block: int):
        real = getattr(cls, method)

        def killed(self, *args, **kwargs):
            if self.state.block == block:
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, killed)
        return lambda: monkeypatch.setattr(cls, method, real)

    return arm
