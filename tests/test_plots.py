"""The studio's previews: what a spectrogram preview shows, and that it stays small to send."""
import base64
import io

import numpy as np
from PIL import Image

from studio.plots import MAGMA, SPECTROGRAM_COLUMNS, readable_note_ticks, spectrogram_figure


def _picture(figure) -> np.ndarray:
    source = figure.layout.images[0].source
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))


def test_the_spectrogram_is_one_picture_of_the_mel_bands_with_a_tone_where_it_sounds():
    t = np.arange(10 * 24_000) / 24_000
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t) * (t > 5)).astype(np.float32)  # silent, then 1 kHz from the fifth second
    figure = spectrogram_figure(tone, 10.0)
    picture = _picture(figure)
    bands = figure.layout.yaxis.range[1]
    assert picture.shape[0] == bands == 80 and picture.shape[1] <= SPECTROGRAM_COLUMNS and not figure.data  # a picture under the axes, no heatmap trace
    loudest_row = np.argmax(picture[:, -50:].sum(axis=(1, 2)))
    assert 20 < bands - loudest_row < 60  # 1 kHz sits in the middle mel bands, counted from the bottom
    assert (picture[:, : picture.shape[1] // 2 - 5] == MAGMA[0]).all()  # silence is the floor colour
    assert 9.8 < figure.layout.images[0].sizex <= 10.0  # the picture spans the audio it shows
    assert len(figure.to_json()) < 60_000


def test_note_labels_never_crowd_the_pitch_axis():
    assert readable_note_ticks(60, 72) == [60, 62, 64, 65, 67, 69, 71, 72]
    assert len(readable_note_ticks(40, 90)) <= 10
