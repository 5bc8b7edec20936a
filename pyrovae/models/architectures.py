"""Ready-made :class:`~pyrovae.models.cvae.SigmaCVAE`\\ s with other networks than Appendix F's MLPs.

``resnet_vae`` gives Berger & Sebag's 2-D architecture (Berger & Sebag 2020, §4.1): encoder and decoder are
residual MLPs with 4 blocks of 200 units; their LV-VAE's σ head (:class:`~pyrovae.models.noise.HeadNoise`)
reads the residual decoder's last hidden layer, ``width`` units. The Pyro program is the same class; only its
``encoder`` and ``decoder`` modules differ.
"""

from __future__ import annotations

from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.nets import ResGaussianEncoder, ResMLP
from pyrovae.models.noise import ObservationNoise

__all__ = ["resnet_vae"]


def resnet_vae(
    condition_dim: int,
    observed_dim: int,
    latent_dim: int = 2,
    width: int = 200,
    blocks: int = 4,
    noise: ObservationNoise | None = None,
    activation: str = "relu",
) -> SigmaCVAE:
    """A σ-CVAE (VAE for ``condition_dim = 0``) whose encoder and decoder are residual MLPs.

    References:
        Berger & Sebag (2020), §4.1: "a ResNet with 4 residual blocks of 200 neurons".
    """
    model = SigmaCVAE(condition_dim, observed_dim, latent_dim, encoder_widths=(2,), decoder_widths=(2,),
                      activation=activation)
    model.encoder = ResGaussianEncoder(condition_dim + observed_dim, width, blocks, latent_dim, activation)
    model.decoder = ResMLP(condition_dim + latent_dim, width, blocks, observed_dim, activation)
    if noise is not None:  # set once the residual decoder is in place: a σ head reads its last hidden layer
        model.noise = noise
        model.check_noise()
    return model
