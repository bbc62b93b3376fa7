"""An ear nobody here trained: Spotify's basic-pitch note transcriber (Bittner et al. 2022), whose
ONNX model ships inside its wheel (installed without its TensorFlow dependency: install.sh).
It tells whether the notes survive where our own MuLan only hears timbre and rhythm."""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE

ONSET_TOLERANCE_S = 0.05  # mir_eval's standard onset window; offsets are not judged


@lru_cache(maxsize=1)
def _model():
    logging.getLogger().setLevel(logging.ERROR)  # basic-pitch warns at import about the back-ends it does not need
    with contextlib.redirect_stdout(io.StringIO()):
        from basic_pitch import ICASSP_2022_MODEL_PATH
        from basic_pitch.inference import Model
    return Model(ICASSP_2022_MODEL_PATH)


def transcribe(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono audio → (N, 3) notes: onset s, offset s, MIDI pitch."""
    from basic_pitch.inference import predict

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audio.wav"
        sf.write(path, np.asarray(audio, np.float32), sample_rate)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per file
            _, _, events = predict(path, _model())
    return np.array([(e[0], e[1], e[2]) for e in events], dtype=np.float64).reshape(-1, 3)


def score_notes(midi_path: Path, seconds: float) -> np.ndarray:
    """(N, 3) pitched notes of a corpus clip's MIDI that start within its ``seconds``."""
    import pretty_midi

    notes = [(n.start, n.end, n.pitch) for part in pretty_midi.PrettyMIDI(str(midi_path)).instruments if not part.is_drum
             for n in part.notes if n.start < seconds]
    return np.array(notes, dtype=np.float64).reshape(-1, 3)


def note_f1(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Onset-and-pitch F1 (mir_eval: a note matches within 50 ms and a quarter tone; offsets free)."""
    import mir_eval

    if not len(reference) or not len(estimate):
        return 0.0
    hz = lambda notes: 440.0 * 2 ** ((notes[:, 2] - 69) / 12)  # noqa: E731
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(reference[:, :2], hz(reference), estimate[:, :2], hz(estimate),
                                                                     onset_tolerance=ONSET_TOLERANCE_S, offset_ratio=None)
    return float(f1)


def pitch_class_frames(notes: np.ndarray, frames: int, rate: float) -> np.ndarray:
    """(12, frames) bool: which pitch classes the transcribed ``notes`` sound in each frame."""
    roll = np.zeros((12, frames), dtype=bool)
    for onset, offset, pitch in notes:
        roll[int(pitch) % 12, max(0, int(round(onset * rate))):max(0, int(round(offset * rate)))] = True
    return roll


def melody_heard(melody: np.ndarray, roll: np.ndarray, unvoiced: int) -> float:
    """Share of a melody's voiced frames (pitch-class tokens) whose pitch class the transcriber
    hears sounding in the other audio at that moment, in any octave."""
    frames = min(len(melody), roll.shape[1])
    voiced = np.flatnonzero(melody[:frames] != unvoiced)
    return float(roll[melody[voiced], voiced].mean()) if voiced.size else 0.0
