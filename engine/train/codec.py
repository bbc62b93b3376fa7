"""Training the codec: multi-resolution reconstruction losses on random crops of corpus audio,
and the decoder-only fine-tune that leaves every token where it is."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import SAMPLE_RATE, log_mel, stft_distance
from ..data.build import pitch_class_roll, read_records
from ..data.recorded import training_excerpts
from ..features import CHANNELS, analyze
from ..nn.codec import CODEC_PRESETS, HOP, N_FFT, Codec, CodecConfig, load_codec, steady_partials, stft_frames, with_fine_head, with_phase_glide
from ..nn.critic import CRITICS, adversarial_terms, critic_loss
from .loop import Recipe, TrainConfig

MEL_RESOLUTIONS = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))


def reconstruction_loss(wav: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-resolution log-mel L1 (weighted 4) + log-STFT L1 and spectral convergence: (loss, mel, stft)."""
    mel = sum((log_mel(wav, n, h, m) - log_mel(recon, n, h, m)).abs().mean() for n, h, m in MEL_RESOLUTIONS) / len(MEL_RESOLUTIONS)
    stft = stft_distance(wav, recon)
    return 4.0 * mel + stft, mel, stft


PITCH_RESOLUTIONS = ((4096, 480),)  # 5.9 Hz bins: the harmonics of neighbouring notes stay apart, as they do not at 12–47 Hz


def phase_derivative_loss(target: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """How far the decoder's phases (B, frames, bins) turn from frame to frame (the instantaneous
    frequency) from the target STFT's (``stft_frames`` laid out alike), the difference wrapped to
    (−π, π] (APNet's anti-wrapping loss) and weighted by the target's magnitude: the note is in how
    fast a partial's phase turns, which no magnitude loss at the decoder's 25 Hz bins can see.
    (APNet's group-delay term, across bins, is left out: a gliding decoder's partials each keep the
    phase of their own history, so their phases relative to one another are free, and that term
    taught it to stop gliding.)"""
    weight = torch.minimum(target.abs()[:, 1:], target.abs()[:, :-1])
    turn = phase.diff(dim=1) - target.angle().diff(dim=1)
    wrapped = (turn - 2 * torch.pi * torch.round(turn / (2 * torch.pi))).abs()
    return (weight * wrapped).sum() / weight.sum().clamp(min=1e-7)


def amplitude_loss(target: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Log-magnitude L1 of the decoder's own frames against the target STFT's (APNet's amplitude
    loss). A gliding decoder unsure of a partial's frequency otherwise hedges by making less of it,
    since the output's magnitude losses punish energy in the wrong place (a scratch run at 2,000
    steps predicted 0.45 × the target's magnitudes)."""
    return (torch.log(mag.clamp(min=1e-5)) - torch.log(target.abs().clamp(min=1e-5))).abs().mean()


COMPRESSION = 0.3  # power-law compression of magnitudes in spectrum_loss (as the encoder reads them)
COMPLEX_SHARE = 0.3  # … and the share of its complex term beside its magnitude term


def _compressed(target: torch.Tensor, mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The target's and the decoder's power-compressed magnitudes, and the target's energy per example."""
    want_mag = target.abs().clamp(min=1e-7).pow(COMPRESSION)
    got_mag = mag.clamp(min=1e-7).pow(COMPRESSION)
    return want_mag, got_mag, want_mag.pow(2).sum((1, 2)).clamp(min=1e-7)


def magnitude_loss(target: torch.Tensor, mag: torch.Tensor, steady_only: bool = True,
                   prominence: float = CodecConfig.glide_prominence) -> torch.Tensor:
    """The decoder's own frames' compressed magnitudes (B, frames, bins) against the target's,
    squared error relative to the target's energy: ``spectrum_loss`` without its phase, counted
    (``steady_only``) where the target has a steady partial (``steady_partials`` at the decoder's
    ``prominence``). A decoder gliding by rule makes those partials' phases from its magnitudes, so
    there the magnitudes must be the target's, which puts a tone back at its frequency; elsewhere
    its phases are stated and the magnitudes that sound right with them are free to differ (held
    to the target everywhere, music's notes came out less clear: docs/experiments.md, 2026-12-05)."""
    want_mag, got_mag, energy = _compressed(target, mag)
    error = (got_mag - want_mag).pow(2)
    if steady_only:
        error = error * steady_partials(target.abs(), prominence=prominence)
    return (error.sum((1, 2)) / energy).mean()


ONSET_STFT = (512, 128)  # onset_loss: 21 ms frames every 5 ms, fine enough in time to see an attack's edge


def onset_loss(wav: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """How the output's onsets differ from the target's: L1 between the rises (the positive
    frame-to-frame differences, spectral flux) of their compressed short-STFT magnitudes, relative
    to the target's. A decoder that glides by rule learnt its magnitudes where partials hold and
    came out with later, softer attacks, which the 50 Hz frames' terms cannot see at a 20 ms edge;
    held to them, it kept more of music's transcribed notes, though not all (docs/experiments.md,
    2026-12-05)."""
    n_fft, hop = ONSET_STFT
    window = torch.hann_window(n_fft, device=wav.device)
    length = min(wav.shape[-1], recon.shape[-1])

    def rises(x: torch.Tensor) -> torch.Tensor:
        mag = torch.stft(x[..., :length].flatten(0, -2), n_fft, hop, window=window, return_complex=True).abs()
        compressed = mag.clamp(min=1e-7).pow(COMPRESSION)
        return (compressed[..., 1:] - compressed[..., :-1]).clamp(min=0)

    want = rises(wav)
    return (rises(recon) - want).abs().mean() / want.mean().clamp(min=1e-5)


MAGNITUDES_ONLY_LOG_SHARE = 0.1  # codec_magnitudes_loss: weight of the log-magnitude L1 beside the compressed magnitudes


def _latents(model: nn.Module, wav: torch.Tensor, coarse_share: float = 0.0) -> torch.Tensor:
    """The latents a decoder fine-tune learns from: of the full-bitrate codes, and for
    ``coarse_share`` of the examples of the coarse levels alone, which generation decodes."""
    with torch.no_grad():
        codes = model.encode(wav)
        latents = model.quantizer.decode(codes)
        if coarse_share:
            coarse = torch.rand(len(wav), device=wav.device) < coarse_share
            latents = torch.where(coarse[:, None, None], model.quantizer.decode(codes[:, : model.cfg.coarse_levels]), latents)
    return latents


def codec_magnitudes_loss(model: nn.Module, wav: torch.Tensor, fine: bool = False, coarse_share: float = 0.0) -> tuple[torch.Tensor, dict]:
    """A gliding decoder's first fine-tune: its frames' magnitudes against the target's
    everywhere (``magnitude_loss`` and a little ``amplitude_loss``), no term on the audio, so no
    phase can be wrong. A decoder whose magnitudes put each partial where it belongs gives the
    rule its steady partials; one fine-tuned on the audio from the start kept the tones on the
    50 Hz comb, its stated phases winning (docs/experiments.md, 2026-12-05). ``fine``: the fine
    head's frames instead, against the target's STFT at its length: what it is trained on.
    ``coarse_share``: as in ``codec_decoder_loss``."""
    decoder = model.fine_decoder if fine else model.decoder
    latents = _latents(model, wav, coarse_share)
    with torch.no_grad():
        target = stft_frames(model.pad(wav), model.cfg.fine_fft if fine else N_FFT).transpose(1, 2)
    frames, fine_frames = decoder.magnitudes(latents)
    mag = fine_frames if fine else frames
    target = target[:, : mag.shape[1]]
    magnitude, amplitude = magnitude_loss(target, mag, steady_only=False), amplitude_loss(target, mag)
    loss = magnitude + MAGNITUDES_ONLY_LOG_SHARE * amplitude
    return loss, {"loss": loss.detach(), "magnitude": magnitude.detach(), "amplitude": amplitude.detach()}


def spectrum_loss(target: torch.Tensor, mag: torch.Tensor, phase: torch.Tensor, phase_counts: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder's own frames (B, frames, bins) against the target STFT's, as power-compressed
    spectra: 0.7 × the compressed magnitudes' and 0.3 × the compressed complex values' squared
    error, each relative to the target's energy (the loss of speech enhancement's phase-aware
    networks). Compression weighs a tone's peak far above the bins where it is silent, where a
    log-magnitude loss weighs them alike and so teaches a decoder unsure of a partial to make none
    of it; the complex term holds the phase each frame must have for the partial to come out.
    ``phase_counts`` (B,) bool: the examples whose complex term counts (default: all)."""
    want_mag, got_mag, energy = _compressed(target, mag)
    magnitude = (got_mag - want_mag).pow(2).sum((1, 2)) / energy
    complex_part = (torch.polar(got_mag, phase) - torch.polar(want_mag, target.angle())).abs().pow(2).sum((1, 2)) / energy
    share = COMPLEX_SHARE if phase_counts is None else COMPLEX_SHARE * phase_counts.to(complex_part.dtype)
    return ((1 - COMPLEX_SHARE) * magnitude + share * complex_part).mean()


@dataclass(frozen=True)
class NoteTerms:
    """Weights of the terms that keep the notes, beside the reconstruction loss (both trainers'):
    ``pitch``, a log-STFT fine enough to tell the notes apart (without it the codec learns the
    spectral envelope and drops them); ``phase``, the decoder's own frames' instantaneous
    frequency and log magnitude against the target's (``phase_derivative_loss``,
    ``amplitude_loss``); ``spectrum``, its frames' compressed spectra (``spectrum_loss``), whose
    phase counts only for decodes from more than ``phase_beyond_levels`` levels (0: every decode);
    ``magnitude``, their compressed magnitudes alone where the target has a steady partial
    (``magnitude_loss``, at the gliding decoder's ``prominence``); ``onset``, the output's attacks
    (``onset_loss``).
    Phase costs bits: held to it at every bitrate, the coarse levels that stage 2 writes spend
    theirs on it instead of on the notes; judging only the fuller decodes on it did not move it
    out of them (docs/experiments.md, 2026-12-03)."""
    pitch: float = 0.0
    phase: float = 0.0
    spectrum: float = 0.0
    phase_beyond_levels: int = 0
    magnitude: float = 0.0
    prominence: float = CodecConfig.glide_prominence
    onset: float = 0.0

    @classmethod
    def of(cls, cfg: TrainConfig, codec: CodecConfig) -> "NoteTerms":
        return cls(cfg.pitch_weight, cfg.phase_weight, cfg.spectrum_weight, cfg.phase_beyond_levels, cfg.magnitude_weight,
                   codec.glide_prominence, cfg.onset_weight)


FEATURE_MATCHING_SHARE = 2.0  # feature matching against the critic's hinge term (HiFi-GAN's 2 : 1)
CRITIC_LR, CRITIC_BETAS = 2e-4, (0.5, 0.9)  # EnCodec's discriminator optimizer


class CriticTerm:
    """Adversarial training's other side, stepped inside the decoder's loss: each call first
    trains the critic on the batch (real crops against their decodes, detached), then, after
    ``after`` steps of its own, returns ``weight`` × (its hinge score of the decodes + 2 × feature
    matching) for the decoder; ``kind`` names the critic (``nn.critic.CRITICS``). The training loop keeps ``critic``, ``optimizer`` and ``steps``
    in the run folder, so a resumed run resumes the critic too."""

    def __init__(self, weight: float, after: int = 0, kind: str = "stft"):
        self.weight, self.after, self.steps = weight, after, 0
        self.critic = CRITICS[kind]()
        self.optimizer = torch.optim.AdamW(self.critic.parameters(), lr=CRITIC_LR, betas=CRITIC_BETAS)

    def __call__(self, wav: torch.Tensor, recon: torch.Tensor, logs: dict) -> torch.Tensor:
        wav, recon = wav[..., : recon.shape[-1]], recon[..., : wav.shape[-1]]
        judged = critic_loss(self.critic, wav, recon.detach())
        self.optimizer.zero_grad(set_to_none=True)
        judged.backward()
        self.optimizer.step()
        self.steps += 1
        logs["critic"] = judged.detach()
        if self.steps <= self.after:
            return wav.new_zeros(())
        self.critic.requires_grad_(False)
        adversarial, matching = adversarial_terms(self.critic, wav, recon)
        self.critic.requires_grad_(True)
        logs["adversarial"], logs["matching"] = adversarial.detach(), matching.detach()
        return self.weight * (adversarial + FEATURE_MATCHING_SHARE * matching)


def codec_loss(model: nn.Module, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], terms: NoteTerms = NoteTerms(),
               note_weight: float = 0.0, critic: CriticTerm | None = None) -> tuple[torch.Tensor, dict]:
    """The reconstruction loss + RVQ commitment + ``terms``, + ``note_weight`` × the note head's
    binary cross-entropy against the pitch classes the score says sound in each 50 Hz frame
    (``batch`` is then (audio, (B, 12, T) roll, (B,) notes known): crops of recorded music have no
    score)."""
    wav, roll, known = batch if note_weight else (batch, None, None)
    recon, spectrum, codes, commit, latents, kept = model(wav)
    loss, mel, stft = reconstruction_loss(wav, recon)
    loss = loss + 0.25 * commit
    logs = {"mel": mel.detach(), "stft": stft.detach(), "commit": commit.detach()}
    loss = loss + _fine_terms(wav, recon, spectrum, terms, logs, kept)
    if critic is not None:
        loss = loss + critic(wav, recon, logs)
    if note_weight:
        logits = model.pitch_class_logits(codes, latents)
        per_crop = F.binary_cross_entropy_with_logits(logits, roll, reduction="none").mean(dim=(1, 2))
        notes = (per_crop * known).sum() / known.sum().clamp(min=1)  # recorded music: notes unknown, no note loss
        loss = loss + note_weight * notes
        logs["notes"] = notes.detach()
    return loss, {"loss": loss.detach(), **logs}


CHROMA_WEIGHT = 2.0  # decoder fine-tune: weight of the pitch-class term beside the log-mel (4) and STFT (1) terms
MFCC_SPREAD_WEIGHT = 1.0  # … and of the timbre-movement term (per-coefficient MFCC spread over the crop)


def _fine_terms(wav: torch.Tensor, recon: torch.Tensor, spectrum: tuple[torch.Tensor, torch.Tensor], terms: NoteTerms,
                logs: dict, kept: torch.Tensor | None = None) -> torch.Tensor:
    """The ``NoteTerms`` that are on, each logged by name; ``kept`` (B,): the levels each example
    was decoded from (None: all of them)."""
    total = wav.new_zeros(())
    if terms.pitch:
        pitch = stft_distance(wav, recon, PITCH_RESOLUTIONS)
        total = total + terms.pitch * pitch
        logs["pitch"] = pitch.detach()
    if terms.phase or terms.spectrum or terms.magnitude:
        mag, phase = spectrum
        target = stft_frames(wav)[..., : mag.shape[1]].transpose(1, 2)  # (B, frames, bins), as the decoder's
    if terms.phase:
        turn, amplitude = phase_derivative_loss(target, phase), amplitude_loss(target, mag)
        total = total + terms.phase * (turn + amplitude)
        logs["phase"], logs["amplitude"] = turn.detach(), amplitude.detach()
    if terms.spectrum:
        phased = kept > terms.phase_beyond_levels if kept is not None and terms.phase_beyond_levels else None
        compressed = spectrum_loss(target, mag, phase, phased)
        total = total + terms.spectrum * compressed
        logs["spectrum"] = compressed.detach()
    if terms.magnitude:
        magnitude = magnitude_loss(target, mag, prominence=terms.prominence)
        total = total + terms.magnitude * magnitude
        logs["magnitude"] = magnitude.detach()
    if terms.onset:
        onset = onset_loss(wav, recon)
        total = total + terms.onset * onset
        logs["onset"] = onset.detach()
    return total


def codec_decoder_loss(model: nn.Module, wav: torch.Tensor, descriptor_weight: float = 1.0,
                       terms: NoteTerms = NoteTerms(), critic: CriticTerm | None = None,
                       coarse_share: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Fine-tuning a trained codec: its tokens stay exactly as they are (every token cache and
    stage LM was built on them), so only the decoder learns, from the full-bitrate codes, and
    for ``coarse_share`` of the examples from the coarse levels alone: what generation decodes.

    Beside the reconstruction loss it matches two descriptors MuLan reads. The jointly trained
    decoder fills the gaps between harmonics, so its chroma comes out flat (mean 0.40 → 0.68 on
    test renders), and it smooths timbre over time (MFCC spread 2.52 → 1.71); MuLan then hears a
    render through the codec as far from its caption (MCC 0.42 → 0.15)."""
    latents = _latents(model, wav, coarse_share)
    with torch.no_grad():
        target = analyze(wav)
    recon, spectrum = model.reconstruct(latents, wav.shape[-1])
    loss, mel, stft = reconstruction_loss(wav, recon)
    frames = analyze(recon)
    chroma = (frames[:, CHANNELS["chroma"]] - target[:, CHANNELS["chroma"]]).abs().mean()
    spread = (frames[:, CHANNELS["mfcc"]].std(-1) - target[:, CHANNELS["mfcc"]].std(-1)).abs().mean()
    loss = loss + descriptor_weight * (CHROMA_WEIGHT * chroma + MFCC_SPREAD_WEIGHT * spread)
    logs = {"mel": mel.detach(), "stft": stft.detach(), "chroma": chroma.detach(), "mfcc_spread": spread.detach()}
    loss = loss + _fine_terms(wav, recon, spectrum, terms, logs)
    if critic is not None:
        loss = loss + critic(wav, recon, logs)
    return loss, {"loss": loss.detach(), **logs}


TONE_RANGE_HZ = (55.0, 1500.0)  # fundamentals of the synthetic tones: beyond the 80–1000 Hz that eval tones asks for


def synthetic_tones(rng: np.random.Generator, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """A crop of plain tones, the sound the corpus's instruments never make: one to three notes at
    once, each a pure sine or 2–10 harmonics with a random roll-off, at a fundamental drawn
    log-uniformly from ``TONE_RANGE_HZ``, with a random attack and release. Returns the audio and
    its (12, samples / HOP) pitch-class roll, which the fundamentals give exactly."""
    t = np.arange(samples) / SAMPLE_RATE
    audio = np.zeros(samples)
    roll = np.zeros((12, samples // HOP), dtype=np.float32)
    for _ in range(rng.integers(1, 4)):
        f0 = float(np.exp(rng.uniform(*np.log(TONE_RANGE_HZ))))
        partials = 1 if rng.random() < 0.5 else int(rng.integers(2, 11))
        rolloff = rng.uniform(0.5, 2.0)
        start, end = sorted(rng.uniform(-0.3, 1.3, size=2) * samples / SAMPLE_RATE)
        envelope = np.clip(np.minimum((t - start) / rng.uniform(0.005, 0.1), (end - t) / rng.uniform(0.01, 0.2)), 0, 1)
        audio += envelope * sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k ** rolloff
                                for k in range(1, partials + 1) if f0 * k < SAMPLE_RATE / 2)
        sounding = envelope[: samples // HOP * HOP].reshape(-1, HOP).mean(1) > 0.1
        roll[int(np.round(12 * np.log2(f0 / 440.0) + 9)) % 12, sounding] = 1.0  # pitch class 0 = C
    peak = np.abs(audio).max()
    return (audio / peak * rng.uniform(0.05, 0.5) if peak > 0 else audio).astype(np.float32), roll


class CorpusAudio:
    """Every clip of one corpus split held in memory (int16), for random training crops; with
    ``notes``, each clip's pitch-class roll at the token rate too (``pitch_class_roll``); with
    ``recorded`` (int16 excerpts of recorded music, whose notes nobody wrote down), that share of
    the crops comes from them instead; ``tone_share`` of them are ``synthetic_tones``."""
    def __init__(self, corpus: Path, split: str = "train", limit: int | None = None, notes: bool = False,
                 recorded: list[np.ndarray] = (), recorded_share: float = 0.0, tone_share: float = 0.0):
        records = read_records(corpus, split)
        if not records:
            raise ValueError(f"{corpus}/{split}.jsonl has no clips; build the corpus first")
        self.records = records[:limit] if limit else records
        self.clips = [sf.read(str(Path(corpus) / r["audio"]), dtype="int16")[0] for r in self.records]
        self.rolls = [pitch_class_roll(corpus, r, -(-len(c) // HOP), SAMPLE_RATE / HOP) for r, c in zip(self.records, self.clips)] if notes else None
        self.recorded, self.recorded_share = list(recorded), recorded_share if len(recorded) else 0.0
        self.tone_share = tone_share

    def crops(self, batch: int, samples: int, seed: int) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Random crops (B, samples) at a random gain; with notes, (crops, (B, 12, samples / HOP)
        rolls, (B,) whether each crop's notes are known), the corpus crops starting on token
        boundaries so that audio and roll stay aligned."""
        rng = np.random.default_rng(seed)
        frames = samples // HOP
        while True:
            out = np.zeros((batch, samples), dtype=np.float32)
            rolls = np.zeros((batch, 12, frames), dtype=np.float32)
            known = np.zeros(batch, dtype=np.float32)
            for i in range(batch):
                if rng.random() < self.tone_share:
                    out[i], rolls[i] = synthetic_tones(rng, samples)
                    known[i] = 1.0
                    continue
                from_recordings = rng.random() < self.recorded_share
                pool = self.recorded if from_recordings else self.clips
                index = rng.integers(len(pool))
                clip = pool[index]
                start = rng.integers(0, max(1, len(clip) - samples))
                if self.rolls is not None and not from_recordings:
                    start = start // HOP * HOP
                    roll = self.rolls[index][:, start // HOP:start // HOP + frames]
                    rolls[i, :, : roll.shape[1]] = roll
                    known[i] = 1.0
                piece = clip[start:start + samples].astype(np.float32) / 32768
                out[i, : len(piece)] = piece
            gain = 10 ** (rng.uniform(-6, 3, size=(batch, 1)) / 20)  # loudness augmentation
            audio = torch.from_numpy(out * gain.astype(np.float32))
            yield audio if self.rolls is None else (audio, torch.from_numpy(rolls), torch.from_numpy(known))


NOTE_LEVELS = 2  # with --note-weight: the levels whose sum must carry the notes (stage 2 writes levels 1–4)


def codec_recipe(corpus: Path, preset: str, cfg: TrainConfig, rank: int) -> Recipe:
    if cfg.fine_fft:  # a fine head learns alone, on any trained codec (two decoders combined too): nothing else moves
        model = with_fine_head(load_codec(Path(cfg.init)), cfg.fine_fft, cfg.fine_context).train()
        model.requires_grad_(False)
        model.fine_decoder.fine_head.requires_grad_(True)
        if cfg.fine_chorus_cents is not None:  # a decoding setting the run carries to its checkpoint: the head learns the same either way
            model.cfg = replace(model.cfg, fine_chorus_cents=cfg.fine_chorus_cents)
    elif cfg.init:  # a fine-tune keeps the trained codec's layout (a note head too), its encoder and codebooks: see codec_decoder_loss
        model = load_codec(Path(cfg.init)).train()
        if model.cfg.partials:
            raise ValueError(f"{cfg.init} is two decoders put together by `codec combine`: fine-tune each as its own run and combine them again")
        if model.cfg.fine_fft:
            raise ValueError(f"{cfg.init} has a fine head, which reads its decoder's trunk as it was: fine-tune the decoder before adding one")
        if cfg.phase_glide:
            model = with_phase_glide(model, rule=cfg.glide_rule, prominence=cfg.glide_prominence)
        for module in (model.encoder, model.quantizer):
            module.requires_grad_(False)
    else:
        layout = CODEC_PRESETS[preset]
        model = Codec(replace(layout, note_levels=NOTE_LEVELS if cfg.note_weight else 0, phase_glide=cfg.phase_glide, glide_rule=cfg.glide_rule,
                              glide_prominence=layout.glide_prominence if cfg.glide_prominence is None else cfg.glide_prominence,
                              phase_vector=cfg.phase_vector))
    samples = int(cfg.crop_seconds * SAMPLE_RATE) // HOP * HOP
    recorded = training_excerpts(tuple(cfg.recorded)) if cfg.recorded_share else []
    batches = CorpusAudio(corpus, notes=cfg.note_weight > 0, recorded=recorded, recorded_share=cfg.recorded_share,
                          tone_share=cfg.tone_share).crops(cfg.batch_size, samples, seed=cfg.seed * 1000 + rank)
    terms, critic = NoteTerms.of(cfg, model.cfg), CriticTerm(cfg.critic_weight, cfg.critic_after, cfg.critic_kind) if cfg.critic_weight else None
    if cfg.magnitudes_only or cfg.fine_fft:
        loss = partial(codec_magnitudes_loss, fine=bool(cfg.fine_fft), coarse_share=cfg.coarse_share)
    elif cfg.init:
        loss = partial(codec_decoder_loss, descriptor_weight=cfg.descriptor_weight, terms=terms, critic=critic, coarse_share=cfg.coarse_share)
    else:
        loss = partial(codec_loss, terms=terms, note_weight=cfg.note_weight, critic=critic)
    return Recipe(model, batches, loss, adversary=critic)
