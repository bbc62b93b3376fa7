"""The studio's live player: audio chunks played by the browser's Web Audio clock the moment
they arrive, instead of through gradio's streamed <audio> (HLS), which waits for whole
segments before it starts (1.7-2.9 s after the click) and can stall after the last one.

The value is the stream so far as the page needs it: a stream id (a new id cuts the old
stream), the latest few chunks with their sequence numbers (a page that merges two updates
still hears both), and whether the piece has ended. Python only encodes; the behaviour and the
look live beside this file."""
from __future__ import annotations

import base64
import uuid
from collections import deque
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np

HERE = Path(__file__).parent
RESENT_CHUNKS = 3  # each update repeats the last few chunks; the page plays each sequence number once
SLICE_SECONDS = 0.5  # longer audio (the clip a continuation starts with) goes in slices: the first plays while the rest travel


class PlayerStream:
    """One piece's updates for the player, chunk by chunk."""
    def __init__(self, sample_rate: int):
        self.id, self.rate, self.sequence = uuid.uuid4().hex, sample_rate, 0
        self.recent: deque = deque(maxlen=RESENT_CHUNKS)

    def chunks(self, pcm16: np.ndarray) -> Iterator[dict]:
        """The updates that carry ``pcm16``: one per slice of at most ``SLICE_SECONDS``."""
        step = int(SLICE_SECONDS * self.rate)
        for start in range(0, max(len(pcm16), 1), step):
            self.sequence += 1
            piece = np.ascontiguousarray(pcm16[start:start + step], dtype="<i2")
            self.recent.append([self.sequence, base64.b64encode(piece.tobytes()).decode("ascii")])
            yield self._value(ended=False)

    def end(self, seconds: float, stopped: bool) -> dict:
        return self._value(ended=True, seconds=round(seconds, 2), stopped=stopped)

    def _value(self, **state) -> dict:
        return {"stream": self.id, "rate": self.rate, "chunks": list(self.recent), **state}


def live_player(**kwargs) -> gr.HTML:
    return gr.HTML({}, html_template=(HERE / "template.html").read_text(), css_template=(HERE / "style.css").read_text(),
                   js_on_load=(HERE / "behaviour.js").read_text(), **kwargs)
