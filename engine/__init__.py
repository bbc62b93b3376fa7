"""hummingbird's engine: MusicLM (text → MuLan M → semantic S → coarse and fine acoustic A →
codec → 24 kHz audio), offline.

This is the front door: the studio and any script use these names and nothing below them.

    from engine import MusicLM, TextRequest, GenerationSettings, save_audio
    model = MusicLM.load()
    for chunk in model.run(TextRequest("calm violin melody over a guitar riff, 90 bpm", GenerationSettings(seconds=10))):
        ...  # chunk.audio: float32 at 24 kHz, as soon as it is decoded
    audio, info = model.render(TextRequest("tender solo piano, slow tempo"))
    save_audio("piano.wav", audio)

Inside: ``nn`` (the models' weights and forward passes), ``generate`` (requests, the streamed
pipeline), ``train`` (one loop, a recipe per model), ``evaluate`` (a file per question, report,
bench), ``data`` (the synthetic corpus), ``checkpoints`` (load, export, verify). The map and the
design are in docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import importlib

_HOMES = {  # name → the module that defines it: imported on first use, so ``python -m engine`` can talk to a running server before torch loads
    ".audio": ("SAMPLE_RATE", "AudioError", "load_audio", "log_mel", "save_audio"),
    ".checkpoints": ("CHECKPOINT_DIR", "missing_models", "model_status"),
    ".files": ("atomic_write",),
    ".generate.live": ("Direction", "LiveStream", "replay"),
    ".generate.musiclm": ("Chunk", "MusicLM"),
    ".generate.requests": ("ContinueRequest", "HumRequest", "InpaintRequest", "Request", "StoryRequest", "StyleRequest", "TextRequest",
                           "check_story", "parse_story", "story_json"),
    ".generate.settings": ("MAX_SECONDS", "SAMPLING_PRESETS", "GenerationSettings", "available_devices", "resolve_device"),
    ".melody": ("PitchTrack", "analyse_hum", "note_name", "notes_heard"),
    ".nn.lm": ("GenerationError",),
    ".prompts": ("MAX_PROMPT_CHARS", "clean_prompt"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME_OF[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME_OF])


__all__ = [
    # generation
    "MusicLM", "GenerationSettings", "SAMPLING_PRESETS", "Chunk", "GenerationError", "MAX_SECONDS", "MAX_PROMPT_CHARS",
    # one request per mode
    "Request", "TextRequest", "HumRequest", "StoryRequest", "ContinueRequest", "InpaintRequest", "StyleRequest",
    "clean_prompt", "check_story", "parse_story", "story_json",
    # live mode: an endless stream steered while it plays, and its timeline rendered again
    "LiveStream", "Direction", "replay",
    # audio in and out, hum analysis
    "SAMPLE_RATE", "AudioError", "load_audio", "save_audio", "log_mel", "atomic_write", "analyse_hum", "notes_heard", "note_name", "PitchTrack",
    # models and devices
    "CHECKPOINT_DIR", "model_status", "missing_models", "available_devices", "resolve_device",
]
