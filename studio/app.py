"""The studio page. It only arranges components and calls the engine's public API.

Until the models are trained the page still opens and says which checkpoints are missing and
the command that trains each one; the generation tabs appear as the models land.
"""
from __future__ import annotations

import gradio as gr

from engine.models import CHECKPOINT_DIR, model_status

TITLE = "hummingbird studio"
INTRO = (
    "Text → music at 24 kHz through MusicLM's three-stage token generator "
    "(MuLan → semantic LM → coarse and fine acoustic LMs → codec), trained from scratch, offline."
)


def status_markdown() -> str:
    rows = model_status()
    missing = [r for r in rows if not r["present"]]
    lines = ["| model | role | status | train with |", "|---|---|---|---|"]
    for r in rows:
        state = "✅ ready" if r["present"] else "❌ missing"
        command = f"`{r['train_command']}`" if r["trainable"] else "trainer not built yet"
        role = r["role"].replace("|", "\\|")  # a literal bar would split the table cell
        lines.append(f"| **{r['name']}** | {role} | {state} | {command} |")
    if missing:
        head = (
            f"### {len(missing)} of {len(rows)} models are missing\n"
            f"Generation needs every checkpoint in `{CHECKPOINT_DIR.parent.name}/{CHECKPOINT_DIR.name}/`. Build the corpus first "
            "(`python -m engine data build --out corpus --hours 1`), then train each missing model "
            "with the command in its row."
        )
    else:
        head = "### All models are ready"
    return head + "\n\n" + "\n".join(lines)


def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# 🐦 {TITLE}\n{INTRO}")
        status = gr.Markdown(status_markdown(), elem_id="model-status")
        refresh = gr.Button("Check models again", size="sm")
        refresh.click(status_markdown, outputs=status, api_name="model_status")
    return app
