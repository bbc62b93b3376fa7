"""The previews under every output: a waveform envelope and a log-mel spectrogram (plotly),
drawn from whatever audio exists so far, so they grow while the music streams in."""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import get_colorscale, sample_colorscale, unlabel_rgb
from PIL import Image

from engine import SAMPLE_RATE, log_mel, note_name

WAVEFORM_POINTS = 2000  # min/max pairs: enough for a sharp envelope, small enough to send every chunk
SPECTROGRAM_COLUMNS = 400  # about the plot's width in pixels
SPECTROGRAM_FLOOR = -5.0  # log10 magnitude shown as black
MAGMA = np.array([unlabel_rgb(rgb) for rgb in sample_colorscale(get_colorscale("Magma"), np.linspace(0, 1, 256))],
                 dtype=np.uint8)  # one colour per byte level of a cell


Segments = list[tuple[float, float, str]]  # story mode: (start s, end s, prompt), shaded on both previews


def _layout(fig: go.Figure, title: str, seconds: float, y_title: str, segments: Segments = (), start: float = 0.0) -> go.Figure:
    fig.update_layout(title=title, height=220, margin=dict(l=50, r=10, t=35, b=35), showlegend=False,
                      xaxis=dict(title="seconds", range=[start, start + max(seconds, 1e-3)]), yaxis=dict(title=y_title))
    for i, (begins, ends, prompt) in enumerate(segments):
        fig.add_vrect(x0=begins, x1=ends, fillcolor=f"hsl({i * 67 % 360}, 60%, 60%)", opacity=0.15, line_width=0,
                      annotation_text=f"{i + 1}. {prompt[:30]}", annotation_position="top left", annotation_font_size=10)
    return fig


def waveform_figure(audio: np.ndarray, seconds: float | None = None, segments: Segments = ()) -> go.Figure:
    """Min/max envelope of the audio so far; ``seconds`` fixes the x-axis to the whole request."""
    total = seconds or len(audio) / SAMPLE_RATE
    fig = go.Figure()
    if len(audio):
        bins = max(1, len(audio) // WAVEFORM_POINTS)
        usable = audio[: len(audio) // bins * bins].reshape(-1, bins)
        t = np.arange(len(usable)) * bins / SAMPLE_RATE
        fig.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]), y=np.concatenate([usable.max(1), usable.min(1)[::-1]]),
                                 fill="toself", mode="lines", line=dict(width=0.5, color="#3a7bd5")))
    return _layout(fig, "waveform", total, "amplitude", segments)


def spectrogram_figure(audio: np.ndarray, seconds: float | None = None, segments: Segments = (), start: float = 0.0) -> go.Figure:
    """80-band log-mel (the codec metric's own settings) at most ``SPECTROGRAM_COLUMNS`` wide (the
    loudest frame of each group of frames), sent as one small PNG under the plot's axes: a heatmap
    trace of the same cells cost the page more to draw with every piece it showed (the first
    sound of a later piece came later and later), a picture does not; ``start``: the second the
    audio begins at (live mode's scrolling view)."""
    total = seconds or len(audio) / SAMPLE_RATE
    fig = go.Figure()
    if len(audio) >= 1024:
        mel = log_mel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))).numpy()
        step = -(-mel.shape[1] // SPECTROGRAM_COLUMNS)
        columns = mel.shape[1] // step * step  # ≥ step: step is at most the frame count
        mel = mel[:, :columns].reshape(mel.shape[0], -1, step).max(2)
        top = max(float(mel.max()), SPECTROGRAM_FLOOR + 1)
        levels = np.round((np.clip(mel, SPECTROGRAM_FLOOR, top) - SPECTROGRAM_FLOOR) / (top - SPECTROGRAM_FLOOR) * 255).astype(np.uint8)
        picture = io.BytesIO()
        Image.fromarray(MAGMA[levels[::-1]]).save(picture, format="PNG")  # row 0 of a picture is its top: the highest band
        fig.add_layout_image(source="data:image/png;base64," + base64.b64encode(picture.getvalue()).decode("ascii"),
                             xref="x", yref="y", x=start, y=mel.shape[0], sizex=levels.shape[1] * step * 256 / SAMPLE_RATE,
                             sizey=mel.shape[0], sizing="stretch", layer="below")
        fig.update_yaxes(range=[0, mel.shape[0]])
    return _layout(fig, "log-mel spectrogram", total, "mel band", segments, start).update_layout(plot_bgcolor="black")


def pitch_figure(times: np.ndarray, midi: np.ndarray) -> go.Figure:
    """A hum's tracked pitch contour with note names on the y-axis (NaN = unvoiced, left blank)."""
    fig = go.Figure(go.Scatter(x=times, y=midi, mode="lines", line=dict(width=2, color="#d5533a"), connectgaps=False,
                               hovertemplate="%{x:.2f} s · MIDI %{y:.1f}<extra></extra>"))
    voiced = midi[np.isfinite(midi)]
    lo, hi = (int(np.floor(voiced.min())) - 2, int(np.ceil(voiced.max())) + 2) if voiced.size else (55, 79)
    ticks = readable_note_ticks(lo, hi)
    fig.update_layout(title="tracked melody", height=240, margin=dict(l=50, r=10, t=35, b=35), showlegend=False,
                      xaxis=dict(title="seconds"), yaxis=dict(title="note", tickvals=ticks, range=[lo, hi],
                                                              ticktext=[note_name(t) for t in ticks]))
    return fig


MAX_NOTE_LABELS = 10


def readable_note_ticks(lo: int, hi: int) -> list[int]:
    """Note labels that do not overlap: the naturals, then C E G, then only the Cs, whichever
    first fits ``MAX_NOTE_LABELS`` over the contour's range."""
    for classes in ((0, 2, 4, 5, 7, 9, 11), (0, 4, 7), (0,)):
        ticks = [m for m in range(lo, hi + 1) if m % 12 in classes]
        if len(ticks) <= MAX_NOTE_LABELS:
            return ticks
    return ticks
