"""A critic for the codec's decoder, sized for a CPU: EnCodec's multi-scale complex-STFT
discriminator, two scales, 16 channels.

Regression losses cannot hear the 50 Hz comb: a log-spectrum loss at the decoder's own 25 Hz bins
sees a partial put on a comb tooth beside it as nearly right, and a fine one rewards spreading
energy between harmonics when the exact partial is uncertain. A critic reading the complex STFT at
6–12 Hz bins sees both the teeth and phases that do not cohere, and its features give the decoder
a target that is the real sound's texture, not its average (SoundStream, EnCodec, DAC, Vocos).

Those frames are too short to hear a comb that is a property of a whole second (lines 1 Hz wide, 12.5
or 50 Hz apart): ``FineSpectrumCritic`` reads 8,192-point frames with the spectral envelope taken out,
and knows where each bin sits within the token rate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..audio import SAMPLE_RATE
from ..evaluate.metrics import COMB_BAND_HZ, COMB_SPACING_HZ

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


FINE_STFT = (8192, 2048)  # 2.9 Hz bins: a line on a grid tells from one beside it; 8 frames in a 1 s crop
FINE_ENVELOPE_HZ = 50.0  # the fine structure is each bin's log power over its ±25 Hz neighbourhood's
FINE_GRID_HARMONICS = 8  # each bin's place within the token rate (COMB_SPACING_HZ), where every comb repeats: to 50 / 16 ≈ 3 Hz


class FineSpectrumCritic(nn.Module):
    """One scale that hears a comb: each long frame's log power between 90 and 3,000 Hz relative to
    its local mean (the timbre taken out, the lines left), beside each bin's place within the 50 Hz
    token rate (cos and sin of its first 8 harmonics), through dilated 1-D convolutions along
    frequency that span several grid lines. A term on the output's lean onto one grid moved the
    energy to the next one, and a critic that knew only the 50 and 12.5 Hz grids saw the sidebands
    move 3.5 Hz off them: one that knows every place within the grid leaves nowhere to move them
    (docs/experiments.md, 2026-12-07)."""

    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.n_fft, self.hop = FINE_STFT
        freqs = torch.fft.rfftfreq(self.n_fft, 1 / SAMPLE_RATE)
        band = (freqs >= COMB_BAND_HZ[0]) & (freqs <= COMB_BAND_HZ[1])  # where the comb is measured
        self.first, self.last = int(band.nonzero()[0]), int(band.nonzero()[-1]) + 1
        places = [f(2 * torch.pi * k * freqs[band] / COMB_SPACING_HZ) for k in range(1, FINE_GRID_HARMONICS + 1) for f in (torch.cos, torch.sin)]
        self.register_buffer("places", torch.stack(places), persistent=False)
        self.envelope = int(FINE_ENVELOPE_HZ / (freqs[1] - freqs[0])) // 2 * 2 + 1
        layers = [weight_norm(nn.Conv1d(1 + len(places), channels, 9, padding=4))]
        layers += [weight_norm(nn.Conv1d(channels, channels, 9, dilation=d, padding=4 * d)) for d in dilations]
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv1d(channels, 1, 3, padding=1))

    def fine_structure(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) → (B · frames, bins in the band): log power over its local mean."""
        spec = torch.stft(wav, self.n_fft, self.hop, window=torch.hann_window(self.n_fft, device=wav.device),
                          center=False, return_complex=True)
        power = spec[:, self.first - self.envelope // 2: self.last + self.envelope // 2].abs().pow(2).transpose(1, 2).flatten(0, 1)
        local = F.avg_pool1d(power[:, None], self.envelope, stride=1)[:, 0]
        core = power[:, self.envelope // 2: self.envelope // 2 + local.shape[-1]]
        return torch.log(core.clamp(min=1e-10)) - torch.log(local.clamp(min=1e-10))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fine = self.fine_structure(wav)
        x = torch.cat([fine[:, None], self.places.expand(len(fine), -1, -1)], dim=1)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.out(x), features


class Critic(nn.Module):
    """Scales that each score a crop and give their features: STFT scales by default, or any given."""

    def __init__(self, scales: list[nn.Module] | None = None):
        super().__init__()
        self.scales = nn.ModuleList(scales if scales is not None else [STFTCritic(n, h) for n, h in CRITIC_RESOLUTIONS])

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


CRITICS = {"stft": Critic, "fine": lambda: Critic([FineSpectrumCritic()])}  # train codec --critic-kind
