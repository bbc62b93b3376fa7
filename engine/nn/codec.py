"""The neural audio codec: 24 kHz waveform ↔ acoustic tokens A (50 Hz, Q RVQ levels × 1024).

SoundStream's job, built for a 2-core CPU. Both sides work at the token rate: the encoder reads a
power-compressed complex STFT (hop 240, two frames stacked per token) through ConvNeXt blocks,
and the decoder is a *causal* ConvNeXt stack with a Vocos-style head that predicts two STFT frames
per token (magnitude and phase) and overlap-adds them back to audio. No layer runs at 24 kHz,
which is what makes encode + decode many times faster than real time.

A network that sees the same tokens twice draws the same phases twice, so a head that predicts
each frame's phase outright repeats itself every token: a steady note comes out on a 50 Hz comb.
With ``phase_glide`` each partial's phase runs on from the frame before at the partial's own
frequency, read off the decoder's magnitudes (a phase vocoder's running phase), so a steady
partial can sit anywhere between the comb's teeth. Where it glides is learnt (a gate per bin), or
with ``glide_rule`` set by a rule: wherever a partial stands out of its neighbourhood and holds its
level from the frame before (``steady_partials``), which voices pure tones the learnt gates shut on.
Gliding music's partials costs its transcribed notes, so with ``partials`` the stated decoder makes
every frame and a gliding one voices the steady partials it loses, and every steady partial above
``partials_above_hz`` (``TwoPathDecoder``). A 960-point frame cannot glide music's partials below
that without smearing neighbouring notes together, so with ``fine_fft`` a second head on the
gliding decoder writes 1,920-point magnitudes (from ``fine_context`` tokens before each too, which
holds their partials steadier from frame to frame), and every partial they hear is voiced anew
over the decode's own re-analysed frames (``revoice``).

Causality makes streaming exact: a chunk of tokens decoded with its receptive field of past
tokens gives the same frames as whole decoding, and one overlap-add class serves every path.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import SAMPLE_RATE
from ..checkpoints import TRAINING_ONLY_BUFFERS, load_trained
from .quantization import ResidualVQ

HOP = 480  # samples per token: 50 Hz
FRAMES_PER_TOKEN = 2
STFT_HOP = HOP // FRAMES_PER_TOKEN  # 240
N_FFT = 4 * STFT_HOP  # 960: 40 ms window, 75 % overlap


@dataclass(frozen=True)
class CodecConfig:
    dim: int = 192
    encoder_blocks: int = 6
    decoder_blocks: int = 8
    kernel: int = 7
    latent_dim: int = 64
    levels: int = 12
    codebook_size: int = 1024
    coarse_levels: int = 4
    quantizer_dropout: float = 0.5
    compress: float = 0.3  # power-law compression of STFT magnitudes fed to the encoder
    note_levels: int = 0  # > 0: a pitch-class head reads the sum of the first levels, so training can put the notes there (0: none)
    phase_glide: bool = False  # the decoder's phases also accumulate a predicted advance per frame (a phase-continuous source)
    phase_vector: bool = False  # the head states each phase as a 2-vector's angle (APNet's parallel estimation), not as one number
    glide_rule: bool = False  # with phase_glide: glide where steady_partials finds a steady partial, not where learnt gates say
    glide_prominence: float = 2.5  # with glide_rule (or partials): nats (≈ 22 dB) a steady partial's peak stands above its neighbourhood's mean
    partials: bool = False  # a second decoder, gliding by the rule, voices the steady partials the first one loses (TwoPathDecoder)
    partials_gap: float = 2.0  # with partials: nats by which the gliding decoder's partial must stand above the first decoder's to be its
    partials_above_hz: float | None = None  # with partials: every steady partial above this glides, wherever the first decoder has it (None: none)
    fine_fft: int = 0  # > 0: a second magnitude head on the gliding decoder writes frames this long, and the output is revoiced from them (revoice)
    fine_context: int = 0  # with fine_fft: tokens before each that its fine head also reads (a causal convolution): the partials it hears hold steadier from frame to frame, off the comb
    fine_prominence: float = 1.0  # with fine_fft: nats a partial's peak stands above its neighbourhood's mean to be revoiced (0.5 took noise peaks too: MuLan heard them) …
    fine_above_hz: float = 200.0  # … when it lies above this frequency (at 1,920 points a semitone is a bin here: below, neighbouring notes share a lobe)
    fine_onset_rise: float = 0.15  # with fine_fft: nats a revoiced partial's level rises from the frame before at an attack, where it keeps the decode's own phase (0: never) …
    fine_onset_climb: float = 0.7  # … while it stands this many nats above the least of the fine_onset_frames before (0: any rise): a level's jitter is no attack …
    fine_onset_frames: int = 8  # … (one 1,920-point frame's span; its resets put the phase back on the decode's 50 Hz grid: docs/experiments.md, 2026-12-07)
    fine_chorus_cents: float = 0.0  # with fine_fft: a revoiced partial above fine_chorus_above_hz sounds beside a copy this many cents sharp (0: none) …
    fine_chorus_share: float = 0.5  # … which takes this share of its energy …
    fine_chorus_above_hz: float = 1000.0  # … (below it, the copies' beating moved chords' dominant pitch class: docs/experiments.md, 2026-12-06)

    @property
    def bits_per_second(self) -> float:
        return self.levels * (self.codebook_size - 1).bit_length() * SAMPLE_RATE / HOP


CODEC_PRESETS = {
    "cpu-small": CodecConfig(),
    "gpu-base": CodecConfig(dim=384, encoder_blocks=8, decoder_blocks=12, latent_dim=128),
}


class ConvNeXtBlock(nn.Module):
    """Depthwise conv → LayerNorm → pointwise MLP, residual. ``causal`` pads on the left only."""
    def __init__(self, dim: int, kernel: int, causal: bool):
        super().__init__()
        self.causal, self.kernel = causal, kernel
        self.dwconv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.pw2 = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel - 1, 0) if self.causal else ((self.kernel - 1) // 2, self.kernel // 2)
        y = self.dwconv(F.pad(x, pad)).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


def stft_frames(wav: torch.Tensor, n_fft: int = N_FFT) -> torch.Tensor:
    """(B, samples) → the complex STFT (B, bins, frames) the codec works on: frame k centred on
    sample k·240, as the encoder reads it and the decoder writes it (``n_fft``: the fine head's)."""
    return torch.stft(wav, n_fft, STFT_HOP, window=torch.hann_window(n_fft, device=wav.device), return_complex=True)


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        bins = N_FFT // 2 + 1
        self.proj_in = nn.Conv1d(2 * bins * FRAMES_PER_TOKEN, cfg.dim, 1)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(cfg.dim, cfg.kernel, causal=False) for _ in range(cfg.encoder_blocks)))
        self.norm = nn.LayerNorm(cfg.dim)
        self.proj_out = nn.Conv1d(cfg.dim, cfg.latent_dim, 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) with samples a multiple of 480 → latents (B, latent_dim, samples / 480)."""
        tokens = wav.shape[-1] // HOP
        spec = stft_frames(wav)[..., : tokens * FRAMES_PER_TOKEN]
        mag = spec.abs().clamp(min=1e-7)
        spec = spec / mag * mag.pow(self.cfg.compress)
        feats = torch.cat([spec.real, spec.imag], 1)  # (B, 2·bins, frames)
        b, c, f = feats.shape
        feats = feats.reshape(b, c, tokens, FRAMES_PER_TOKEN).permute(0, 1, 3, 2).reshape(b, c * FRAMES_PER_TOKEN, tokens)
        x = self.blocks(self.proj_in(feats))
        return self.proj_out(self.norm(x.transpose(1, 2)).transpose(1, 2))


FINE_LEVEL_REACH = 4  # revoice: bins (12.5 Hz) either side of a partial whose energy it takes from the decode: ±50 Hz, the comb's teeth …
FINE_REACH_SHARE = 1 / 12  # … and never more than this share of its frequency (≈ 1.4 semitones): below 600 Hz, ±50 Hz takes in the next notes' partials
FINE_CHORUS_MAX_BINS = 1.0  # revoice: a chorus copy sits at most this far above its partial (12.5 Hz at 1,920 points), so its lobe stays within the bins drawn: 10 cents is 2.3 bins at 5 kHz, where a sine came back 15 % quiet
FINE_SILENT_ENERGY = 1e-10  # revoice: a partial's energy is floored here; the silence before a stream is at this level
FINE_LOG_CEILING = 7.0  # the fine head's log-magnitudes are clamped below this (its frames are twice as long: its magnitudes twice as large)
PHASE_WRAP_EVERY = 8  # running_phase: frames between wraps of the carried phases (under 16 turns: float32 keeps them to 1e-5 rad)
GLIDE_LOBE = 2  # bins either side of a partial's peak that a Hann window spreads it over: they follow the peak's phase
GLIDE_START = -4.0  # a fine-tuned decoder's "tonal" gates start almost shut: it decodes as before, then learns where to glide
GLIDE_OPEN = 2.0  # a decoder trained from scratch starts with its gates mostly open (0.88): every partial glides until training says a bin is noise
GLIDE_STEADY = 0.7  # nats (≈ 6 dB): a peak that moves less than this from the frame before is a steady partial …
GLIDE_NEIGHBOURHOOD_HZ = 425.0  # … when it stands CodecConfig.glide_prominence above the mean log magnitude of the bins this wide around it


def _wrap(phase: torch.Tensor) -> torch.Tensor:
    return torch.remainder(phase + torch.pi, 2 * torch.pi) - torch.pi


def _lobe_peaks(mag: torch.Tensor) -> torch.Tensor:
    """For each bin (B, n, bins), the index of the strongest bin within ``GLIDE_LOBE`` of it: the
    partial whose main lobe it belongs to."""
    _, best = F.max_pool1d(mag.flatten(0, 1)[:, None], 2 * GLIDE_LOBE + 1, 1, GLIDE_LOBE, return_indices=True)
    return best[:, 0].view_as(mag)


def _peak_offset(mag: torch.Tensor) -> torch.Tensor:
    """Where, in bins from each bin's centre, a partial peaking at that bin sits: the vertex of a
    parabola through the log magnitudes of the bin and its two neighbours (a Hann window's main
    lobe is close to a parabola in log magnitude). Only peak bins' values are used."""
    level = torch.log(mag.clamp(min=1e-7))
    below, above = F.pad(level, (1, 0), value=-16.0)[..., :-1], F.pad(level, (0, 1), value=-16.0)[..., 1:]
    curve = below - 2 * level + above  # < 0 at a peak
    return (0.5 * (below - above) / curve.clamp(max=-1e-6)).clamp(-0.5, 0.5)


def prominent_partials(mag: torch.Tensor, peak: torch.Tensor, prominence: float) -> torch.Tensor:
    """(B, n, bins) magnitudes of frames ``2 · (bins − 1)`` points long and their ``_lobe_peaks`` →
    True for each bin whose partial (its lobe's peak) stands ``prominence`` nats above the mean log
    magnitude of its ``GLIDE_NEIGHBOURHOOD_HZ``."""
    level = torch.log(mag.clamp(min=1e-5))
    width = int(GLIDE_NEIGHBOURHOOD_HZ * 2 * (mag.shape[-1] - 1) / SAMPLE_RATE) | 1  # 17 bins of 960 points, 35 of 1,920
    around = _window_sum(level, width) / _window_sum(torch.ones_like(level[..., :1, :]), width)  # the mean of the bins that exist
    return (level - around).gather(-1, peak) > prominence


def _window_sum(x: torch.Tensor, width: int) -> torch.Tensor:
    """The sum of each bin's ``width`` (odd) neighbours along the last axis, those that exist: a
    moving sum by differences of a float64 cumulative sum, five times quicker than pooling."""
    total = F.pad(x.double(), (width // 2 + 1, width // 2)).cumsum(-1)
    return (total[..., width:] - total[..., :-width]).to(x.dtype)


def steady_partials(mag: torch.Tensor, peak: torch.Tensor | None = None,
                    prominence: float = CodecConfig.glide_prominence) -> torch.Tensor:
    """(B, n, bins) magnitudes (and their ``_lobe_peaks``) → 1.0 for each bin whose partial is
    ``prominent_partials`` and holds its level within ``GLIDE_STEADY`` of the frame before (the
    first frame's: its own), else 0.0. A sustained note's partials pass; a drum's attack, noise
    and a dense chord's smeared bins do not."""
    peak = _lobe_peaks(mag) if peak is None else peak
    level = torch.log(mag.clamp(min=1e-5))
    before = torch.cat([level[:, :1], level[:, :-1]], 1)
    steady = (level.gather(-1, peak) - before.gather(-1, peak)).abs() < GLIDE_STEADY
    return (steady & prominent_partials(mag, peak, prominence)).to(mag.dtype)


def running_phase(mag, stated, tonal, peak, running, offset=None):
    """A phase vocoder with phase locking (Laroche & Dolson) over frames (B, n, bins) hopped by
    ``STFT_HOP``: each partial's peak bin turns on from its last phase at its own frequency (the
    bin's centre plus ``_peak_offset`` of the magnitudes), and the bins of its lobe sit half a turn
    apart, as a steady partial's do under a Hann window centred in its frame. Where a bin is not
    ``tonal`` (bool, or a gate between 0 and 1 that mixes the two), the ``stated`` phase.
    ``running``: the phases of the frame before (None: zeros); ``offset``: the magnitudes'
    ``_peak_offset``, where the caller has it already. Returns every frame's phases and
    the last frame's, to carry on. The frequency is read off the magnitudes, which the amplitude
    loss teaches directly: a learnt offset got no gradient while the gates were shut, and the
    gates shut because the offsets were wrong."""
    bins = torch.arange(mag.shape[-1], device=mag.device)
    offset = _peak_offset(mag) if offset is None else offset
    step = torch.pi * STFT_HOP / (mag.shape[-1] - 1)  # how far a bin's centre frequency turns in a hop
    turn = torch.remainder(bins.double() * step, 2 * torch.pi).to(mag.dtype) + offset.detach() * step  # one remainder per bin, not per frame and bin
    advance = turn.gather(-1, peak) + torch.pi * ((bins - peak) & 1)  # the partial's turn, its lobe's alternation
    phase = running if running is not None else mag.new_zeros(mag.shape[0], mag.shape[-1])
    phases, gated = [], tonal.dtype == torch.bool
    for k, (peak_k, advance_k, tonal_k, stated_k) in enumerate(zip(peak.unbind(1), advance.unbind(1), tonal.unbind(1), stated.unbind(1))):
        carried = phase.gather(-1, peak_k) + advance_k  # the loop decoding spends most in: as few operations as can be
        if gated:  # a carried phase grows by under two turns a frame: wrapped now and then, it keeps its precision
            phase = torch.where(tonal_k, torch.remainder(carried, 2 * torch.pi) if k % PHASE_WRAP_EVERY == 0 else carried, stated_k)
        else:
            phase = _wrap(stated_k + tonal_k * _wrap(carried - stated_k))
        phases.append(phase)
    return (torch.stack(phases, 1) if phases else stated), phase


class Frames(NamedTuple):
    """What a decoder makes of latents: its STFT frames' magnitude and phase (B, n, bins), the last
    frame's phases to carry into the next call (a gliding decoder's; else None), and with a fine
    head the same frames' magnitudes at ``CodecConfig.fine_fft`` points (else None)."""
    mag: torch.Tensor
    phase: torch.Tensor
    running: torch.Tensor | None = None
    fine: torch.Tensor | None = None


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.bins = N_FFT // 2 + 1
        # per bin: log-magnitude, phase (or the two parts of a vector whose angle it is); gliding by learnt gates also: how tonal it is
        self.learnt_gates = cfg.phase_glide and not cfg.glide_rule
        self.kinds = 2 + cfg.phase_vector + self.learnt_gates
        self.proj_in = nn.Conv1d(cfg.latent_dim, cfg.dim, 1)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(cfg.dim, cfg.kernel, causal=True) for _ in range(cfg.decoder_blocks)))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, self.kinds * self.bins * FRAMES_PER_TOKEN)
        if self.learnt_gates:
            self.head.bias.data.view(FRAMES_PER_TOKEN, self.kinds, self.bins)[:, -1] = GLIDE_OPEN
        self.fine_bins = cfg.fine_fft // 2 + 1
        # log-magnitudes, from each token's features and those of the fine_context tokens before it
        self.fine_head = nn.Conv1d(cfg.dim, self.fine_bins * FRAMES_PER_TOKEN, cfg.fine_context + 1) if cfg.fine_fft else None

    @property
    def receptive_field(self) -> int:
        """How many past tokens influence a token's frames (for exact streaming); the rule also
        reads the frame before, the previous token's, and a fine head ``fine_context`` tokens' features."""
        rule = int(self.cfg.phase_glide and self.cfg.glide_rule)
        return (self.cfg.kernel - 1) * self.cfg.decoder_blocks + max(rule, self.cfg.fine_context if self.cfg.fine_fft else 0)

    def forward(self, latents: torch.Tensor, skip: int = 0, running: torch.Tensor | None = None) -> Frames:
        """latents (B, D, T) → the ``Frames`` (B, 2T − skip, bins) after the first ``skip`` (context
        whose frames were already made); ``running``: what the last call returned as its own."""
        lead = min(skip, 1)  # the frame before the first one wanted: the rule compares with it
        hidden = self._hidden(latents)
        x = self._frames(hidden)[:, skip - lead:]
        fine = self._fine_magnitudes(hidden)
        fine = fine[:, skip:] if fine is not None else None
        mag = self._magnitude(x)
        stated = self._stated_phase(x)[:, lead:]
        if not self.cfg.phase_glide:
            return Frames(mag[:, lead:], stated, None, fine)
        peak = _lobe_peaks(mag.detach())
        tonal = steady_partials(mag.detach(), peak, self.cfg.glide_prominence) > 0 if self.cfg.glide_rule else torch.sigmoid(x[:, :, -1])
        mag, peak, tonal = mag[:, lead:], peak[:, lead:], tonal[:, lead:]
        return Frames(mag, *running_phase(mag, stated, tonal, peak, running), fine)

    def _hidden(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, D, T) → the trunk's features (B, T, dim) that the heads read."""
        return self.norm(self.blocks(self.proj_in(latents)).transpose(1, 2))

    def _frames(self, hidden: torch.Tensor) -> torch.Tensor:
        """The trunk's features → the head's values for every frame and bin (B, 2T, kinds, bins)."""
        x = self.head(hidden)  # (B, T, kinds·bins·2)
        return x.reshape(x.shape[0], x.shape[1] * FRAMES_PER_TOKEN, self.kinds, self.bins)

    def _fine_magnitudes(self, hidden: torch.Tensor) -> torch.Tensor | None:
        if self.fine_head is None:
            return None
        x = self.fine_head(F.pad(hidden.transpose(1, 2), (self.cfg.fine_context, 0))).transpose(1, 2)
        return torch.exp(x.reshape(x.shape[0], x.shape[1] * FRAMES_PER_TOKEN, self.fine_bins).clamp(max=FINE_LOG_CEILING))

    @staticmethod
    def _magnitude(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x[:, :, 0].clamp(max=6.0))

    def magnitudes(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every frame's magnitude (B, 2T, bins), and the fine head's (None without one), from one
        pass of the trunk and no phase: for training that reads the magnitudes alone, which need
        not run a gliding decoder's frame-by-frame phase loop, and for ``TwoPathDecoder``."""
        hidden = self._hidden(latents)
        return self._magnitude(self._frames(hidden)), self._fine_magnitudes(hidden)

    def _stated_phase(self, x: torch.Tensor) -> torch.Tensor:
        """The phase the head states for each bin. As one number it must jump by a whole turn
        somewhere as the input's phase turns round (a continuous map from a circle to the line
        cannot wind round it): a smooth network makes the jump a steep step, wrong near it. The
        angle of a 2-vector needs no step (APNet's parallel phase estimation)."""
        if self.cfg.phase_vector:
            return torch.atan2(x[:, :, 2], x[:, :, 1])
        return x[:, :, 1]


class TwoPathDecoder(nn.Module):
    """The stated-phase decoder's frames, but for the steady partials it loses: those a gliding
    decoder (the rule at ``glide_prominence``) voices, its magnitude and running phase. A partial
    counts as lost where the gliding decoder's peak stands ``partials_gap`` nats above the stated
    decoder's level at that bin: a pure tone from about 700 Hz up, which the stated decoder moves
    onto the 50 Hz comb, or a harmonic tone's upper partials. Where both decoders hear a partial
    (most of music) the stated decoder's frame stays as it is: gliding there costs music's
    transcribed notes (docs/experiments.md, 2026-12-05). Above ``partials_above_hz`` every steady
    partial glides: there the stated phases put music's partials on the comb too, and the 25 Hz
    bins resolve a semitone, so the gliding decoder's frequencies hold (below it they are pulled
    toward the bins' centres and add to the comb). Both read the same latents, so the tokens, and
    the stages that write them, stay as they were."""
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.stated = Decoder(replace(cfg, partials=False, phase_glide=False, glide_rule=False, fine_fft=0))
        self.partials = Decoder(replace(cfg, partials=False, phase_glide=True, glide_rule=True))

    @property
    def receptive_field(self) -> int:
        return max(self.stated.receptive_field, self.partials.receptive_field)

    def forward(self, latents: torch.Tensor, skip: int = 0, running: torch.Tensor | None = None) -> Frames:
        """As ``Decoder.forward``; a fine head is the gliding decoder's."""
        mag, stated, *_ = self.stated(latents, skip)
        lead = min(skip, 1)  # the frame before the first one wanted: the rule compares with it
        gliding, fine = self.partials.magnitudes(latents)
        gliding, fine = gliding[:, skip - lead:], (fine[:, skip:] if fine is not None else None)
        peak = _lobe_peaks(gliding)
        steady = steady_partials(gliding, peak, self.cfg.glide_prominence)
        gliding, peak, steady = gliding[:, lead:], peak[:, lead:], steady[:, lead:]
        gap = (torch.log(gliding.clamp(min=1e-5)) - torch.log(mag.clamp(min=1e-5))).gather(-1, peak)
        lost = gap > self.cfg.partials_gap
        if self.cfg.partials_above_hz is not None:
            lost = lost | (peak * (SAMPLE_RATE / N_FFT) > self.cfg.partials_above_hz)
        lost = lost & (steady > 0)
        phase, running = running_phase(gliding, stated, lost, peak, running)
        return Frames(torch.where(lost, gliding, mag), phase, running, fine)


def with_partials(codec: "Codec", gliding: "Codec", gap: float = CodecConfig.partials_gap, above_hz: float | None = None) -> "Codec":
    """``codec`` with ``gliding``'s decoder voicing the steady partials its own loses
    (``TwoPathDecoder``). ``gliding`` must be a fine-tune of ``codec``'s decoder by the glide rule
    with the encoder and codebooks held (``train codec --init … --phase-glide --glide-rule``), so
    both decoders read the same tokens. ``above_hz``: ``CodecConfig.partials_above_hz``."""
    if codec.cfg.partials or codec.cfg.phase_glide:
        raise ValueError("the first codec must have a single stated-phase decoder: not a gliding one, nor two already combined")
    if codec.cfg.fine_fft or gliding.cfg.fine_fft:
        raise ValueError("combine decoders without fine heads, then train the combined codec's (train codec --init … --fine-fft N)")
    if not gliding.cfg.glide_rule:
        raise ValueError("the partials' decoder must glide by the rule (trained with --phase-glide --glide-rule)")
    mine = _outside_decoder(codec, gliding, "fine-tune the gliding decoder from this codec with its encoder and codebooks held")
    combined = Codec(replace(codec.cfg, partials=True, partials_gap=gap, partials_above_hz=above_hz, glide_prominence=gliding.cfg.glide_prominence))
    combined.load_state_dict({**mine, **{f"decoder.stated.{k}": v for k, v in codec.decoder.state_dict().items()},
                              **{f"decoder.partials.{k}": v for k, v in gliding.decoder.state_dict().items()}})
    return combined.eval()


def with_stated(codec: "Codec", combined: "Codec") -> "Codec":
    """``combined`` (two decoders already) with ``codec``'s decoder stating its frames: how a later
    fine-tune of the stated decoder alone (``train codec --init`` the codec it was combined from)
    joins the gliding decoder and fine head trained beside it, whose settings it keeps."""
    if not combined.cfg.partials:
        raise ValueError("the second codec must be a combined one (codec combine) to take a new stated decoder")
    if codec.cfg.partials or codec.cfg.phase_glide or codec.cfg.fine_fft:
        raise ValueError("the first codec must have a single stated-phase decoder: not a gliding one, nor two already combined")
    _outside_decoder(codec, combined, "fine-tune the stated decoder from the codec it was combined from, with its encoder and codebooks held")
    restated = Codec(combined.cfg)
    restated.load_state_dict({**combined.state_dict(), **{f"decoder.stated.{k}": v for k, v in codec.decoder.state_dict().items()}})
    return restated.eval()


def _outside_decoder(codec: "Codec", other: "Codec", remedy: str) -> dict:
    """``codec``'s weights outside its decoder, once ``other`` is known to hold the same ones (to read its tokens)."""
    outside = lambda model: {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}  # noqa: E731
    mine, theirs = outside(codec), outside(other)
    trained = [k for k in mine if not k.endswith(TRAINING_ONLY_BUFFERS)]  # the EMA statistics are not the tokens
    if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in trained):
        raise ValueError(f"the two codecs read different tokens: {remedy}")
    return mine


def synthesize(mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """STFT frames (B, n, bins) as magnitude and phase → windowed time-domain frames (B, n, 2·(bins − 1))."""
    return _windowed_frames(torch.polar(mag, phase))


def _windowed_frames(spectrum: torch.Tensor) -> torch.Tensor:
    n_fft = 2 * (spectrum.shape[-1] - 1)
    return torch.fft.irfft(spectrum, n=n_fft) * torch.hann_window(n_fft, device=spectrum.device)


def with_phase_glide(codec: "Codec", rule: bool = False, prominence: float | None = None) -> "Codec":
    """The same codec with a phase-gliding decoder, to fine-tune: every trained weight kept, the
    tonal gates almost shut (``GLIDE_START``), so it decodes nearly as before until the fine-tune
    opens them; with ``rule``, no gates: ``steady_partials`` says where to glide. ``prominence``
    sets the rule's threshold, also of a codec that already glides (which keeps its way of gliding)."""
    prominence = codec.cfg.glide_prominence if prominence is None else prominence
    if codec.cfg.phase_glide and prominence == codec.cfg.glide_prominence:
        return codec
    rule = codec.cfg.glide_rule if codec.cfg.phase_glide else rule  # the head's layout stays that of the trained decoder
    glide = Codec(replace(codec.cfg, phase_glide=True, glide_rule=rule, glide_prominence=prominence))
    state = codec.state_dict()
    if rule or codec.cfg.phase_glide:
        glide.load_state_dict(state)
        return glide.train(codec.training)
    frames, bins, kinds = FRAMES_PER_TOKEN, codec.decoder.bins, codec.decoder.kinds
    for name in ("decoder.head.weight", "decoder.head.bias"):
        old = state[name].reshape(frames, kinds, bins, *state[name].shape[1:])
        new = torch.zeros(frames, kinds + 1, bins, *old.shape[3:])
        new[:, :kinds] = old
        if name.endswith("bias"):
            new[:, kinds] = GLIDE_START
        state[name] = new.reshape(frames * (kinds + 1) * bins, *old.shape[3:])
    glide.load_state_dict(state)
    return glide.train(codec.training)


def with_fine_head(codec: "Codec", n_fft: int, context: int = 0) -> "Codec":
    """The same codec with a fine head of ``n_fft`` points on its gliding decoder (its only decoder,
    if it has one), reading ``context`` tokens before each too (``CodecConfig.fine_context``), to
    train alone (``train codec --init … --fine-fft N``): every trained weight kept, the new head
    started from the decoder's own log-magnitude rows, read at each fine bin's frequency, plus
    log(n_fft / 960) for the longer frame's larger magnitudes; the earlier tokens' weights start
    at zero. A codec that has the same head already comes back as it is."""
    if codec.cfg.fine_fft:
        if (codec.cfg.fine_fft, codec.cfg.fine_context) != (n_fft, context):
            raise ValueError(f"this codec has a fine head of {codec.cfg.fine_fft} points reading {codec.cfg.fine_context} tokens before each "
                             f"already, not {n_fft} and {context}")
        return codec
    if n_fft <= N_FFT or n_fft % (2 * STFT_HOP):
        raise ValueError(f"a fine head needs frames longer than {N_FFT} points, a multiple of {2 * STFT_HOP}; got {n_fft}")
    if context < 0:
        raise ValueError(f"a fine head reads the tokens before each one, not {context}")
    fine = Codec(replace(codec.cfg, fine_fft=n_fft, fine_context=context))
    fine.load_state_dict(codec.state_dict(), strict=False)
    source, head = codec.fine_decoder, fine.fine_decoder.fine_head
    position = torch.arange(head.out_channels // FRAMES_PER_TOKEN) * (source.bins - 1) / (n_fft // 2)
    below = position.floor().long()
    above, share = (below + 1).clamp(max=source.bins - 1), position - below
    with torch.no_grad():
        head.weight.zero_()
        for old, new, shift in ((source.head.weight, head.weight[..., -1], 0.0), (source.head.bias, head.bias, math.log(n_fft / N_FFT))):
            rows = old.view(FRAMES_PER_TOKEN, source.kinds, source.bins, -1)[:, 0]  # the log-magnitude rows
            mixed = rows[:, below] * (1 - share[:, None]) + rows[:, above] * share[:, None]
            new.copy_(mixed.reshape(new.shape) + shift)
    return fine.train(codec.training)


def _fold(frames: torch.Tensor) -> torch.Tensor:
    """Sum frames (B, n, n_fft) hopped by 240 → (B, (n-1)·240 + n_fft)."""
    b, n, n_fft = frames.shape
    length = (n - 1) * STFT_HOP + n_fft
    return F.fold(frames.transpose(1, 2), (1, length), (1, n_fft), stride=(1, STFT_HOP)).reshape(b, length)


def overlap_add(frames: torch.Tensor) -> torch.Tensor:
    """Inverse STFT of windowed frames (B, n, n_fft), frame k centred on sample k·240 (like
    ``torch.istft(center=True)``) → (B, n·240) samples."""
    n, n_fft = frames.shape[1:]
    window_sq = torch.hann_window(n_fft, device=frames.device).pow(2)
    envelope = _fold(window_sq.expand(1, n, n_fft))
    audio = _fold(frames) / envelope.clamp(min=1e-8)
    return audio[:, n_fft // 2: n_fft // 2 + n * STFT_HOP]


class OverlapAdd:
    """Streaming ``overlap_add``: push frames, get back every sample no later frame can change.

    Frame k covers padded samples [k·240, k·240 + n_fft); output sample s is padded sample s + n_fft / 2.
    A sample is final once every frame that overlaps it has arrived; ``flush`` returns the rest.
    """
    def __init__(self, device: torch.device | str = "cpu", n_fft: int = N_FFT):
        self.n_fft = n_fft
        self.window_sq = torch.hann_window(n_fft, device=device).pow(2)
        self.buffer = torch.zeros(0, device=device)
        self.envelope = torch.zeros(0, device=device)
        self.offset = 0  # padded index of buffer[0]
        self.frames_in = 0
        self.emitted = 0  # output samples returned so far

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (n, n_fft) of one stream → newly final output samples (1-D)."""
        n = frames.shape[0]
        if n:
            start = self.frames_in * STFT_HOP - self.offset
            end = start + (n - 1) * STFT_HOP + self.n_fft
            if end > self.buffer.shape[0]:
                grow = end - self.buffer.shape[0]
                self.buffer = torch.cat([self.buffer, frames.new_zeros(grow)])
                self.envelope = torch.cat([self.envelope, frames.new_zeros(grow)])
            self.buffer[start:end] += _fold(frames[None])[0]
            self.envelope[start:end] += _fold(self.window_sq.expand(1, n, self.n_fft))[0]
            self.frames_in += n
        # padded samples before frames_in·240 receive no more frames
        return self._emit(self.frames_in * STFT_HOP - self.n_fft // 2)

    def flush(self, total_samples: int) -> torch.Tensor:
        return self._emit(total_samples)

    def _emit(self, upto: int) -> torch.Tensor:
        """Return output samples [emitted, upto) and drop them from the buffer."""
        lo = self.emitted + self.n_fft // 2 - self.offset
        hi = min(upto + self.n_fft // 2 - self.offset, self.buffer.shape[0])
        if hi <= lo:
            return self.buffer.new_zeros(0)
        out = self.buffer[lo:hi] / self.envelope[lo:hi].clamp(min=1e-8)
        self.buffer, self.envelope = self.buffer[hi:], self.envelope[hi:]
        self.offset += hi
        self.emitted += hi - lo
        return out


def hann_lobe(offset: torch.Tensor) -> torch.Tensor:
    """The magnitude a steady sinusoid gives a Hann-windowed frame's bins ``offset`` bins from its
    frequency, relative to its peak's: |sinc(x) / (1 − x²)| (0.5 at one bin)."""
    denominator = 1 - offset * offset
    at_one_bin = denominator.abs() < 1e-4  # 0 / 0 there: its limit, 0.5
    return torch.where(at_one_bin, 0.5, torch.sinc(offset) / torch.where(at_one_bin, 1.0, denominator)).abs()


class Voicing(NamedTuple):
    """What ``revoice`` carries from one frame to the next: each bin's phase (each voice's, the
    chorus copy's after the partials' own along the batch) and its partial's level (nats) in the last
    ``fine_onset_frames`` frames (B, frames, bins)."""
    phase: torch.Tensor
    levels: torch.Tensor


def attacks(level: torch.Tensor, cfg: CodecConfig, levels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's partials' levels (B, n, bins; nats) and those of the ``fine_onset_frames`` frames
    before (B, frames, bins; None: a stream's start, silence before it) → True where a partial attacks: it rises by
    ``fine_onset_rise`` from the frame before and stands ``fine_onset_climb`` above the least of the
    frames before; and the last frames' levels, to carry on. A level that jitters from frame to
    frame (the decode's energy around a partial whose peak moves by a bin) rises as often as an
    attack does, but climbs nowhere."""
    reach_back = cfg.fine_onset_frames
    silence = level.new_full((level.shape[0], reach_back, level.shape[-1]), math.log(FINE_SILENT_ENERGY) / 2)
    past = torch.cat([silence if levels is None else levels, level], 1)
    rise = level - past[:, reach_back - 1:-1]
    climb = level - past.unfold(1, reach_back, 1)[:, :-1].amin(-1)
    return (rise >= cfg.fine_onset_rise) & (climb >= cfg.fine_onset_climb), past[:, -reach_back:]


def revoice(spec: torch.Tensor, fine: torch.Tensor, cfg: CodecConfig, running: Voicing | None = None):
    """The decoded audio's own STFT frames (B, n, bins) at ``fine_fft`` points, with every partial
    the fine head hears (its peak ``fine_prominence`` nats out of its neighbourhood, above
    ``fine_above_hz``) voiced anew as a steady sinusoid: a Hann window's lobe (``hann_lobe``) at
    the frequency the fine head's magnitudes give it (``_peak_offset``), carrying the energy the
    decode has around it (``FINE_LEVEL_REACH``, ``FINE_REACH_SHARE``), and a phase that runs on at that frequency
    (``running_phase``; ``running``: the ``Voicing`` of the frames before), except at an attack,
    where its level rises by ``fine_onset_rise`` from the frame before and stands ``fine_onset_climb``
    above the least of the ``fine_onset_frames`` before: there it keeps the decode's phase, as a
    phase vocoder resets its phases at transients, so the attack stays aligned across its bins (a
    steady phase through it blurred music's onsets, which MuLan heard). A 960-point frame's lobe is 125 Hz
    wide and covers the next semitone's partial, so there a gliding phase smears neighbouring notes
    together; at 1,920 points each keeps its own lobe, and music's partials glide off the 50 Hz comb
    keeping their notes (docs/experiments.md, 2026-12-06). The fine head says where a partial is,
    the full decode how loud: the fine head's own levels lost the pitch class on a frame in a
    hundred, and its own lobe shapes, wider than a steady sinusoid's, lost up to a third of a high
    partial's energy when the frames were added up. Everywhere else the frames are the decode's own,
    so the audio is too. With ``fine_chorus_cents`` a partial above ``fine_chorus_above_hz`` sounds
    beside a copy that many cents sharp (``FINE_CHORUS_MAX_BINS`` at most), its phase running at its
    own frequency: the renders' chorus and reverb spread their partials, and a lone steady sinusoid
    sounded thinner to MuLan than the decode it replaced (docs/experiments.md, 2026-12-06). Returns
    the windowed time-domain frames and the ``Voicing`` to carry on."""
    peak = _lobe_peaks(fine)
    peak_hz = peak * (SAMPLE_RATE / cfg.fine_fft)
    voiced = prominent_partials(fine, peak, cfg.fine_prominence) & (peak_hz > cfg.fine_above_hz)
    voiced &= peak.gather(-1, peak) == peak  # a partial is a lobe's own peak: a bin beside a stronger one's flank belongs to none
    at = voiced.nonzero(as_tuple=True)  # (example, frame, bin) of every voiced bin: only these are drawn anew
    peak_at = (at[0], at[1], peak[at])  # … and of its partial's peak
    bins, offset = torch.arange(fine.shape[-1], device=fine.device), _peak_offset(fine)
    decoded, analysed = spec.abs(), spec.angle()
    around = _energy_around(decoded.pow(2), peak, (peak * FINE_REACH_SHARE).round().long().clamp(max=FINE_LEVEL_REACH))
    level = around.clamp(min=FINE_SILENT_ENERGY).log() / 2
    attack, levels = attacks(level, cfg, None if running is None else running.levels)
    steady = voiced & ~attack if cfg.fine_onset_rise > 0 else voiced
    offsets = [offset]
    if cfg.fine_chorus_cents:
        detune = ((bins + offset) * (2 ** (cfg.fine_chorus_cents / 1200) - 1)).clamp(max=FINE_CHORUS_MAX_BINS)
        offsets.append(offset + detune)
    voices = len(offsets)  # every voice's phases run in one loop: the batch holds them side by side

    def side_by_side(x: torch.Tensor) -> torch.Tensor:  # (no copy for one voice)
        return x if voices == 1 else x.repeat(voices, *(1,) * (x.dim() - 1))

    carried = side_by_side(analysed[:, 0]) if running is None else running.phase
    phases, last = running_phase(side_by_side(fine), side_by_side(analysed), side_by_side(steady), side_by_side(peak), carried, torch.cat(offsets))
    phases = phases.chunk(voices)

    def lobe_at(shift: torch.Tensor) -> torch.Tensor:
        """The voiced bins' magnitudes: a Hann lobe at the partial's frequency (its peak bin plus ``shift``),
        scaled to the decode's energy around it, over the bins its partial takes."""
        lobe = hann_lobe(at[2] - peak_at[2] - shift[peak_at])
        energy = torch.zeros_like(fine).index_put_(peak_at, lobe.pow(2), accumulate=True)[peak_at]
        return lobe * (around[at] / energy.clamp(min=1e-10)).sqrt()

    out, drawn = spec.clone(), torch.polar(lobe_at(offset), phases[0][at])
    if cfg.fine_chorus_cents:
        chorused = peak_hz[at] > cfg.fine_chorus_above_hz
        copy = torch.polar(lobe_at(offsets[1]), phases[1][at])
        drawn = torch.where(chorused, (1 - cfg.fine_chorus_share) ** 0.5 * drawn + cfg.fine_chorus_share ** 0.5 * copy, drawn)
    out[at] = drawn
    return _windowed_frames(out), Voicing(last, levels)


def _energy_around(power: torch.Tensor, peak: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """(B, n, bins) power, each bin's partial's peak and reach (bins, at most ``FINE_LEVEL_REACH``)
    → the power within that reach of the peak, by differences of one float64 cumulative sum."""
    total = F.pad(power.double(), (FINE_LEVEL_REACH + 1, FINE_LEVEL_REACH)).cumsum(-1)
    return (total.gather(-1, peak + FINE_LEVEL_REACH + 1 + reach) - total.gather(-1, peak + FINE_LEVEL_REACH - reach)).to(power.dtype)


def _analysis(padded: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(B, samples) with n_fft / 2 samples of padding before its first → the complex STFT frames
    (B, n, bins) hopped by 240 that fit in it, frame k centred on sample k·240."""
    return torch.fft.rfft(padded.unfold(-1, n_fft, STFT_HOP) * torch.hann_window(n_fft, device=padded.device))


def revoiced(audio: torch.Tensor, fine: torch.Tensor, cfg: CodecConfig) -> torch.Tensor:
    """Decoded audio (B, n·240) and its frames' fine magnitudes (B, n, fine bins) → ``revoice``d audio
    (B, n·240). The ends are padded with silence (not reflected), so streaming needs no look at the end."""
    half = cfg.fine_fft // 2
    spec = _analysis(F.pad(audio, (half, half)), cfg.fine_fft)[:, : fine.shape[1]]
    return overlap_add(revoice(spec, fine, cfg)[0])


class Revoicer:
    """Streaming ``revoiced``: push the decoded audio that is final and the fine magnitudes of the
    frames decoded so far, get back the revoiced audio no later frame can change. A frame is
    revoiced once the audio it spans has arrived: the output trails the decode by half a frame
    (``fine_fft`` / 2 samples, 40 ms at 1,920 points)."""
    def __init__(self, cfg: CodecConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.padded = torch.zeros(cfg.fine_fft // 2, device=device)  # the audio from padded sample ``start`` on (the silence before it first)
        self.start = 0
        self.fine = torch.zeros(0, cfg.fine_fft // 2 + 1, device=device)  # the fine magnitudes of frames ``done`` on
        self.done = 0
        self.running: Voicing | None = None
        self.ola = OverlapAdd(device, cfg.fine_fft)

    def push(self, audio: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """audio (samples,) and fine (n, fine bins) of one stream → newly final revoiced samples."""
        self.padded, self.fine = torch.cat([self.padded, audio]), torch.cat([self.fine, fine])
        ready = min(len(self.fine), (self.start + len(self.padded) - self.cfg.fine_fft) // STFT_HOP + 1 - self.done)
        return self._voice(max(ready, 0))

    def finish(self, audio: torch.Tensor, total_samples: int) -> torch.Tensor:
        """The last decoded audio and the rest, as no more comes: the last frames read silence past the end."""
        self.padded = torch.cat([self.padded, audio, audio.new_zeros(self.cfg.fine_fft)])
        return torch.cat([self._voice(len(self.fine)), self.ola.flush(total_samples)])

    def _voice(self, n: int) -> torch.Tensor:
        if not n:
            return self.padded.new_zeros(0)
        offset = self.done * STFT_HOP - self.start
        span = self.padded[offset: offset + (n - 1) * STFT_HOP + self.cfg.fine_fft]
        frames, self.running = revoice(_analysis(span[None], self.cfg.fine_fft), self.fine[None, :n], self.cfg, self.running)
        self.fine, self.done = self.fine[n:], self.done + n
        keep = self.done * STFT_HOP - self.start  # the next frame starts here
        self.padded, self.start = self.padded[keep:], self.start + keep
        return self.ola.push(frames[0])


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig = CodecConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualVQ(cfg.levels, cfg.codebook_size, cfg.latent_dim, dropout=cfg.quantizer_dropout)
        self.decoder = TwoPathDecoder(cfg) if cfg.partials else Decoder(cfg)
        self.note_head = nn.Conv1d(cfg.latent_dim, 12, 1) if cfg.note_levels else None

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @property
    def fine_decoder(self) -> Decoder:
        """The decoder a fine head belongs on: the gliding one of two, else the only one."""
        return self.decoder.partials if self.cfg.partials else self.decoder

    @staticmethod
    def pad(wav: torch.Tensor) -> torch.Tensor:
        """Right-pad to a whole number of tokens."""
        return F.pad(wav, (0, (-wav.shape[-1]) % HOP))

    def forward(self, wav: torch.Tensor):
        """Training pass: (B, samples) → reconstruction, its STFT (magnitude, phase), codes, commitment
        loss, the encoder's latents, the levels each example kept (quantizer dropout)."""
        latents = self.encoder(wav)
        quantized, codes, commit, kept = self.quantizer(latents)
        return *self.reconstruct(quantized, wav.shape[-1]), codes, commit, latents, kept

    def pitch_class_logits(self, codes: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 12, T) logits of the pitch classes sounding in each frame, read from the sum of the
        first ``note_levels`` levels: what stage 2 writes first. In training (``latents`` given) a
        straight-through estimator passes the head's gradient on to the encoder."""
        first = self.quantizer.decode(codes[:, : self.cfg.note_levels])
        if latents is not None:
            first = latents + (first - latents).detach()
        return self.note_head(first)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """(B, samples) → codes (B, Q, T), T = ceil(samples / 480)."""
        return self.quantizer.encode(self.encoder(self.pad(wav)), levels)

    def reconstruct(self, latents: torch.Tensor, samples: int | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """latents → waveform and the STFT frames (magnitude, phase) it was made from (training's losses read both)."""
        mag, phase, _, fine = self.decoder(latents)
        wav = overlap_add(synthesize(mag, phase))
        if fine is not None:
            wav = revoiced(wav, fine, self.cfg)
        return (wav[..., :samples] if samples else wav), (mag, phase)

    def decode_latents(self, latents: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        return self.reconstruct(latents, samples)[0]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, q, T), any prefix q of the levels → waveform (B, T·480)."""
        return self.decode_latents(self.quantizer.decode(codes))

    @torch.no_grad()
    def stream_decode(self, codes: torch.Tensor, chunk_tokens: int = 10):
        """Yield audio for one stream of codes (q, T) chunk by chunk, as tokens become available."""
        streamer = CodecStreamer(self)
        total = codes.shape[-1]
        for start in range(0, total, chunk_tokens):
            yield streamer.push(codes[:, start:start + chunk_tokens], final=start + chunk_tokens >= total)


class CodecStreamer:
    """Incremental decoding: push the next tokens (q, n) of one stream, get the audio that is now
    final. Each push decodes only its tokens plus the causal decoder's receptive field of past
    tokens, so the result equals whole decoding; only that field is kept, so an endless stream
    (live mode) decodes in flat memory."""
    def __init__(self, codec: Codec):
        self.codec = codec
        self.codes: torch.Tensor | None = None  # the last receptive field of tokens pushed
        self.pushed = 0  # frames pushed in all
        self.running: torch.Tensor | None = None  # a gliding decoder's running phase
        device = next(codec.parameters()).device
        self.ola = OverlapAdd(device)
        self.revoicer = Revoicer(codec.cfg, device) if codec.cfg.fine_fft else None

    @torch.no_grad()
    def push(self, codes: torch.Tensor, final: bool = False) -> torch.Tensor:
        kept = 0 if self.codes is None else self.codes.shape[-1]
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], -1)
        left = max(0, kept - self.codec.decoder.receptive_field)
        latents = self.codec.quantizer.decode(self.codes[None, :, left:])
        mag, phase, self.running, fine = self.codec.decoder(latents, (kept - left) * FRAMES_PER_TOKEN, self.running)
        piece = self.ola.push(synthesize(mag, phase)[0])
        if self.revoicer is not None:
            piece = self.revoicer.push(piece, fine[0])
        self.pushed += codes.shape[-1]
        self.codes = self.codes[:, max(0, self.codes.shape[-1] - self.codec.decoder.receptive_field):]
        return torch.cat([piece, self.finish()]) if final else piece

    def finish(self) -> torch.Tensor:
        """The audio the last frames still held back (no more tokens come)."""
        rest = self.ola.flush(self.pushed * HOP)
        return rest if self.revoicer is None else self.revoicer.finish(rest, self.pushed * HOP)


def load_codec(path=None, device: str = "cpu") -> Codec:
    """Load a trained codec: ``assets/checkpoints/codec.safetensors`` (with its shards) by
    default, or a training run folder."""
    return load_trained("codec", path, lambda config: Codec(CodecConfig(**{k: v for k, v in config.items() if k in CodecConfig.__dataclass_fields__})), device)
