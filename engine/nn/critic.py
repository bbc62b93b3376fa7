"""A critic for the codec's decoder, sized for a CPU: EnCodec's multi-scale complex-STFT
discriminator, two scales, 16 channels.

Regression losses cannot hear the 50 Hz comb: a log-spectrum loss at the decoder's own 25 Hz bins
sees a partial put on a comb tooth beside it as nearly right, and a fine one rewards spreading
energy between harmonics when the exact partial is uncertain. A critic reading the complex STFT at
6–12 Hz bins sees both the teeth and phases that do not cohere, and its features give the decoder
a target that is the real sound's texture, not its average (SoundStream, EnCodec, DAC, Vocos).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

CRITIC_RESOLUTIONS = ((2048, 512), (1024, 256))  # 11.7 and 23 Hz bins: the comb's teeth are 50 Hz apart


class STFTCritic(nn.Module):
    """One scale: the complex STFT (real and imaginary parts as two channels, time × frequency)
    through 2-D convolutions that halve the frequency axis and dilate along time."""

    def __init__(self, n_fft: int, hop: int, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav, self.n_fft, self.hop, window=torch.hann_window(self.n_fft, device=wav.device),
                          normalized=True, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, frames, bins)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.out(x), features


class Critic(nn.Module):
    def __init__(self, resolutions: tuple[tuple[int, int], ...] = CRITIC_RESOLUTIONS, channels: int = 16):
        super().__init__()
        self.scales = nn.ModuleList(STFTCritic(n, h, channels) for n, h in resolutions)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [scale(wav) for scale in self.scales]


def critic_loss(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss: real crops score ≥ 1, decoded ones ≤ −1 (``fake`` detached by the caller)."""
    total = real.new_zeros(())
    for (score_real, _), (score_fake, _) in zip(critic(real), critic(fake)):
        total = total + F.relu(1 - score_real).mean() + F.relu(1 + score_fake).mean()
    return total / len(critic.scales)


def adversarial_terms(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's side: (hinge loss on the critic's scores of ``fake``, feature matching: each
    layer's L1 distance between the critic's features of ``fake`` and ``real``, relative to the
    real features' mean magnitude, as EnCodec normalizes it)."""
    with torch.no_grad():
        reals = critic(real)
    adversarial, matching, layers = real.new_zeros(()), real.new_zeros(()), 0
    for (score, features), (_, real_features) in zip(critic(fake), reals):
        adversarial = adversarial + F.relu(1 - score).mean()
        for got, want in zip(features, real_features):
            matching = matching + (got - want).abs().mean() / want.abs().mean().clamp(min=1e-5)
            layers += 1
    return adversarial / len(critic.scales), matching / layers
