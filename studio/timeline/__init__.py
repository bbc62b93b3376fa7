"""The Story tab's timeline: one block per segment, sharing the width in proportion to its
length; drag to reorder, drag the right handle to resize (0.5 s steps), add and remove. Its value is the story JSON itself (the file `generate --story` reads), so import, export,
the segment table and generation all speak the same format.

Built on ``gr.HTML`` templates: the markup, style and behaviour live beside this file as plain
HTML / CSS / JS, and Python only converts between the story JSON and the table rows.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

HERE = Path(__file__).parent


def story_value(rows: list[tuple[str, float]]) -> dict:
    return {"segments": [{"prompt": str(p), "seconds": float(s)} for p, s in rows]}


def story_rows(value: dict | None) -> list[list]:
    return [[s["prompt"], s["seconds"]] for s in (value or {}).get("segments", [])]


def story_timeline(rows: list[tuple[str, float]], **kwargs) -> gr.HTML:
    return gr.HTML(story_value(rows), html_template=(HERE / "template.html").read_text(), css_template=(HERE / "style.css").read_text(),
                   js_on_load=(HERE / "behaviour.js").read_text(), **kwargs)
