"""Golden output: every mode of a seeded random-weight generator makes exactly the audio it made
when the golden file was written. Any change of behaviour (sampling, layouts, the draft rule, the
codec's streaming) fails here and must be recorded on purpose:

    UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""
import os
from pathlib import Path

import numpy as np
import pytest

from engine import GenerationSettings, StyleRequest
from engine.melody import melody_tokens, synthetic_hum
from tests.golden_models import golden_pipeline

GOLDEN = Path(__file__).parent / "golden" / "pieces.npz"
STRIDE = 16  # every 16th sample is stored: 6 kB a piece, and no change of behaviour leaves them all in place


def _clip(seconds: float, jitter: float = 0.0) -> np.ndarray:
    """A tremolo tone over a faint noise floor. Without the floor, most STFT bins of a pure tone
    hold rounding error, which differs between CPUs, and the codec's tokens of the clip (so every
    clip mode's audio) followed it: the golden file must not depend on the machine that wrote it.
    ``jitter``: the size of a perturbation that may not change any piece (the test below)."""
    t = np.arange(int(seconds * 24_000)) / 24_000
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.01 * rng.standard_normal(len(t))
    return (tone + jitter * rng.standard_normal(len(t))).astype(np.float32)


def _whole(chunks) -> np.ndarray:
    return np.concatenate([c.audio for c in chunks])


def _clip_pieces(model, jitter: float = 0.0) -> dict[str, np.ndarray]:
    """The modes that start from a clip."""
    return {
        "continue": _whole(model.continuation(_clip(1.2, jitter), None, GenerationSettings(seconds=0.8, seed=5))),
        "continue_prompt": _whole(model.continuation(_clip(1.2, jitter), "a flute lullaby", GenerationSettings(seconds=0.8, seed=5))),
        "inpaint": _whole(model.inpaint(_clip(2.0, jitter), 0.5, 1.0, "a flute lullaby", GenerationSettings(seed=6))),
        "style": _whole(model.run(StyleRequest((_clip(1.2, jitter),), "a flute lullaby", (0.5, 1.0),
                                              GenerationSettings(seconds=0.8, seed=7, style_guidance=5.0)))),
    }


def _pieces(model) -> dict[str, np.ndarray]:
    hum = melody_tokens(synthetic_hum([(0.1, 0.4, 60), (0.5, 0.4, 64), (0.9, 0.4, 67)], 1.4))
    return {
        "text_bpm": _whole(model.stream("calm piano ballad, 100 bpm", GenerationSettings(seconds=1.5, seed=3))),
        "text_negative": _whole(model.stream("dreamy ambient pads", GenerationSettings(seconds=1.2, seed=1, top_k=50,
                                                                                    negative_prompt="drums"))),
        "hum": _whole(model.stream("warm strings", GenerationSettings(seconds=1.2, seed=2), melody=hum)),
        "story": _whole(model.story([("calm piano", 0.6), ("loud metal, 140 bpm", 0.7)], GenerationSettings(seed=4))),
        **_clip_pieces(model),
    }


@pytest.fixture(scope="module")
def pieces():
    return _pieces(golden_pipeline())


def test_every_mode_makes_the_golden_audio(pieces):
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, **{f"{k}.samples": v[::STRIDE] for k, v in pieces.items()},
                            **{f"{k}.length": np.array(len(v)) for k, v in pieces.items()})
    golden = np.load(GOLDEN)
    assert sorted(pieces) == sorted({k.split(".")[0] for k in golden.files})
    for mode, audio in pieces.items():
        assert len(audio) == int(golden[f"{mode}.length"]), mode
        np.testing.assert_allclose(audio[::STRIDE], golden[f"{mode}.samples"], rtol=1e-4, atol=1e-6, err_msg=mode)


def test_a_clip_changed_by_rounding_error_makes_the_same_pieces(pieces):
    """What another CPU's arithmetic does to the clip (a millionth of full scale, far above its
    rounding error) leaves every clip mode's audio as it is, so the golden file holds on any machine."""
    for mode, audio in _clip_pieces(golden_pipeline(), jitter=1e-6).items():  # the clip itself, where a mode yields it, moves by the jitter alone
        np.testing.assert_allclose(audio, pieces[mode], rtol=1e-4, atol=1e-5, err_msg=mode)


def test_the_golden_pieces_differ_from_each_other(pieces):
    """A golden file that holds silence, or one piece seven times, would pin nothing down."""
    rms = {mode: float(np.sqrt(np.mean(audio ** 2))) for mode, audio in pieces.items()}
    assert all(value > 1e-4 for value in rms.values()), rms
    assert len({round(value, 7) for value in rms.values()}) == len(rms)
