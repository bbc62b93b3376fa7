"""The studio page. It only arranges components and calls the engine's public API (``import
engine``: each handler builds a request and plays ``MusicLM.run(request)``); history and plots
live beside it in plain Python.

Until the models are trained the page still opens and says which checkpoints are missing and
the command that trains each one.
"""
from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np

from engine import (CHECKPOINT_DIR, MAX_SECONDS, SAMPLE_RATE, SAMPLING_PRESETS, AudioError, ContinueRequest, Direction, GenerationSettings,
                    HumRequest, InpaintRequest, LiveStream, MusicLM, StoryRequest, StyleRequest, TextRequest, analyse_hum, available_devices, check_story,
                    load_audio, missing_models, model_status, notes_heard, parse_story, resolve_device, save_audio, story_json)

from . import desktop
from .history import History, kept, summary
from .player import PlayerStream, live_player
from .plots import pitch_figure, spectrogram_figure, waveform_figure
from .timeline import story_rows, story_timeline, story_value

TITLE = "hummingbird studio"
INTRO = ("Describe music in words, hum a tune, or lay out a story, and hear it as it is made. "
         "Everything runs on this computer; nothing is sent anywhere.")
EXAMPLES = [
    ["calm violin melody over a distorted guitar riff, 90 bpm"],
    ["tender solo piano, slow tempo, melancholic"],
    ["techno with an 808 drum machine and synth bass, 128 bpm"],
    ["laid-back bossa nova with nylon-string guitar and brushes"],
    ["chiptune with a square lead and electronic drums, quick tempo"],
]
SEED_RANGE = 2**31
# Every launch of the studio passes these. Gradio 6 keeps each page's last 100 runs, outputs and all
# (our plots and audio chunks), in the browser's localStorage, and rewrites the whole list with
# every streamed update: a page got slower with each piece it had played, and stayed slow after a
# reload (docs/experiments.md). The History tab keeps the pieces; with this off, gradio also deletes
# what it had saved in the browser.
LAUNCH_OPTIONS = {"run_history": False}
# The progress line and the live player show a piece's progress; gradio's overlays and timers on
# every output would repaint the page the whole time, on the cores generation needs.
LIVE_PROGRESS = "hidden"
PLOT_EVERY_SECONDS = 2.0  # redraw the previews this often while streaming (each redraw costs CPU the generator needs)
# A continuation (or inpainting) starts with the user's own clip: the player gets only its last
# seconds as a lead-in to the new music (the saved piece keeps all of it). Every update costs the
# page a re-render; the whole clip, even in slices, cost 0.3–1.4 s late in a session.
LEAD_IN_SECONDS = 1.0
# ... and generation waits this long after sending it, so that the browser, on the same cores as
# the stage workers, starts playing before they take them; the lead-in covers the wait.
LEAD_IN_HEAD_START = 0.25
LIVE_BUFFER = 1.0  # seconds the live stream runs ahead of the page's player: how much old music plays after a change
LIVE_VIEW_SECONDS = 10.0  # the live spectrogram scrolls over this much
LIVE_KEEP_MINUTES = 10.0  # the most of a live stream the page holds for "keep"
STYLE_CLIPS = 3  # reference clips the Style tab offers (the engine blends up to 8 sources)


log = logging.getLogger("hummingbird.studio")


def refuse(message: str) -> gr.Error:
    """What the user asked for cannot be done: the message in the page, one line in the server
    log (gradio would print a traceback for every refusal)."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def preset_values(name: str) -> tuple:
    """A preset as the sampling controls' values, in their order (``sampling_values``)."""
    return sampling_values(asdict(SAMPLING_PRESETS[name]))


def sampling_values(settings: dict) -> tuple:
    """Settings (a preset's, or a history entry's) as the sampling controls' values, in their order:
    T1, T2, T3, top-k, guidance on stages 1 and 2, and whether loud and quiet words set the loudness
    (the order every generation endpoint takes them in, after its own inputs)."""
    return (*settings["temperatures"], settings["top_k"], settings["guidance"], settings["coarse_guidance"], settings.get("level_stage", True))


def settings_from_controls(seconds, seed, locked, t1, t2, t3, top_k, guidance, coarse_guidance, level_stage=True, negative="",
                           fresh: Callable[[], int] = lambda: random.randrange(SEED_RANGE)) -> GenerationSettings:
    """The shared controls (duration, seed and its lock, then the sampling panel in
    ``preset_values``' order) as settings. An unlocked seed is drawn afresh (``fresh``): a new take per click."""
    try:
        seed = int(seed) if locked else fresh()
        return GenerationSettings(seconds=float(seconds), seed=seed, temperatures=(float(t1), float(t2), float(t3)), top_k=int(top_k),
                                  guidance=float(guidance), coarse_guidance=float(coarse_guidance), level_stage=bool(level_stage),
                                  negative_prompt=" ".join((negative or "").split()))
    except (TypeError, ValueError) as exc:
        raise refuse(str(exc)) from None


PLAIN_ROLES = {  # what each model does, in a musician's words
    "codec": "turns sound into tokens and tokens back into sound",
    "mulan": "links words and music: reads your prompt",
    "prior": "finds the music your words are closest to",
    "semantic": "hears melody, harmony and rhythm in audio",
    "stage1": "writes the melody, harmony and rhythm",
    "stage2": "writes the sound, in broad strokes",
    "stage3": "adds the fine detail of the sound (off: it guesses no better than chance yet)",
}
MODEL_CARD = CHECKPOINT_DIR / "MODEL_CARD.md"


def status_markdown() -> str:
    rows = model_status()
    missing = [r for r in rows if not r["present"]]
    lines = ["| part | what it does | status |", "|---|---|---|"]
    lines += [f"| **{r['name']}** | {PLAIN_ROLES.get(r['name'], '')} | {'✅ ready' if r['present'] else '❌ missing'} |" for r in rows]
    if missing:
        head = (f"### {len(missing)} of {len(rows)} parts are missing\n"
                "The studio needs every part to make music. To train them, open *For developers* below.")
    else:
        head = f"### All {len(rows)} parts are ready\nEach was trained from scratch on this project's own music; the model card below says how well each works and where it falls short."
    return head + "\n\n" + "\n".join(lines)


def training_markdown() -> str:
    """For developers: where the checkpoints live and the command that trains each part."""
    lines = [f"Checkpoints live in `{CHECKPOINT_DIR}`. Build the corpus first (`python -m engine data build --out corpus --hours 1`), "
             "then train each part:", ""]
    lines += [f"- **{r['name']}** ({r['role']}): `{r['train_command']}`" for r in model_status()]
    return "\n".join(lines)


def model_card_markdown() -> str:
    try:
        return MODEL_CARD.read_text(encoding="utf-8")
    except OSError:
        return f"no model card at {MODEL_CARD}"


class Studio:
    """What the page's callbacks share: one loaded generator (loaded on first use) and the history."""

    def __init__(self, model: MusicLM | None = None, history: History | None = None, device: str = "auto"):
        self._model, self.history = model, history or History()
        self.device = resolve_device(device).type if model is None else model.device.type
        self.last: Path | None = None  # the latest output, for "continue the last output"
        self._lock = threading.Lock()
        self._generating = 0  # streams in flight: the device may not change under them
        self._stop = threading.Event()  # Stop: the streams in flight end at their next chunk and keep what they made
        self._tracked: dict[str, np.ndarray] = {}  # the last hum file's melody tokens, tracked when it arrived
        self._live: LiveStream | None = None  # the live stream playing (or last played), and its recent audio
        self._live_audio: deque[np.ndarray] = deque()
        self._upcoming_seed = random.randrange(SEED_RANGE)  # the next unlocked Text take's, drawn early so its opening can be

    def model(self) -> MusicLM:
        with self._lock:
            if self._model is None:
                missing = missing_models()
                if missing:
                    raise refuse(f"missing checkpoints: {', '.join(m['name'] for m in missing)} — see the Models tab")
                try:
                    self._model = MusicLM.load(device=self.device).warm_up()
                except ValueError as exc:  # checkpoints that do not belong together
                    raise refuse(str(exc)) from None
            return self._model

    def use_device(self, name: str) -> str:
        """The shared device control: move generation to the CPU or the GPU between pieces."""
        try:
            device = resolve_device(name)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        with self._lock:
            if self._generating:
                raise refuse("a piece is being generated; stop it or let it finish, then switch the device")
            self.device = device.type
            if self._model is not None:
                self._model.to(device)
        return f"generating on **{device.type}**"

    def warm_up_in_background(self) -> None:
        """Load and warm the generator while the page opens, so the first click plays within seconds."""
        if not missing_models():
            threading.Thread(target=self.model, daemon=True).start()

    def stop(self) -> None:
        """The Stop button: every piece in flight ends after its current chunk, kept as a
        partial piece (a cancelled event would leave error badges and no download)."""
        with self._lock:
            if self._generating:
                self._stop.set()
            if self._live is not None:
                self._live.stop()

    def _play(self, make_request, segments=()):
        """Stream any request to the page: audio chunks to the live player as they are decoded,
        progress, growing previews, the seed drawn; the finished (or stopped) piece goes to the
        history with the settings that reproduce it, and to the audio player to replay and
        download. ``make_request`` builds the request, whose checks may refuse it."""
        called = time.perf_counter()
        try:
            request = make_request()
        except (AudioError, ValueError) as exc:
            raise refuse(str(exc)) from None
        model = self.model()
        asked = time.perf_counter()
        chunks, total = model.run(request), request.seconds
        player = PlayerStream(SAMPLE_RATE)
        pieces: list[np.ndarray] = []
        drawn, entry, stopped = None, None, False  # the previews are first drawn PLOT_EVERY_SECONDS after the first chunk
        record = {**request.record(), "device": self.device}  # the same seed draws differently on a GPU
        seed = request.settings.seed
        with self._lock:
            if not self._generating:
                self._stop.clear()
            self._generating += 1
        try:
            for chunk in chunks:
                if not pieces:  # where a click's first second goes on the server (studio.first_sound reads it)
                    log.info("first chunk: %s, request %.3f s, generation %.3f s", request.mode, asked - called, time.perf_counter() - asked)
                pieces.append(chunk.audio)
                stages = " · ".join(f"{k} {v:.1f} s" for k, v in chunk.stages.items())
                progress = f"**{chunk.seconds_done:.1f} / {total:g} s**" + (f" · {stages}" if stages else "")
                given_clip = len(pieces) == 1 and not chunk.stages  # a continuation's first chunk: the user's clip
                heard = chunk.audio[-int(LEAD_IN_SECONDS * SAMPLE_RATE):] if given_clip else chunk.audio
                # the finished piece's outputs are sent empty, not skipped: gradio 6 rebuilds every output a yield
                # skips on its event loop, a cost that grew with each piece played (docs/experiments.md)
                for update in player.chunks(_pcm16(heard)):
                    yield None, progress, gr.skip(), gr.skip(), None, None, seed, update
                if given_clip:
                    time.sleep(LEAD_IN_HEAD_START)
                drawn = chunk.seconds_done if drawn is None else drawn
                if chunk.seconds_done - drawn >= PLOT_EVERY_SECONDS:  # after the chunk is on its way: plots are slow to send and draw
                    so_far = np.concatenate(pieces)
                    yield None, progress, waveform_figure(so_far, total, segments), spectrogram_figure(so_far, total, segments), None, None, seed, gr.skip()
                    drawn = chunk.seconds_done
                if self._stop.is_set():
                    stopped = True
                    break
        except ValueError as exc:  # input only the engine can judge (e.g. a clip too short to continue)
            raise refuse(str(exc)) from None
        except Exception as exc:  # a fault inside generation: say what happened, keep serving
            raise gr.Error(f"generation failed: {exc}") from exc  # a fault, not a refusal: its traceback goes to the log
        finally:  # also when the page goes away (the generator is closed): keep what was made
            chunks.close()
            with self._lock:
                self._generating -= 1
            audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            if len(audio):
                entry = self.history.add(audio, record, planned_seconds=total if stopped else None)
                self.last = self.history.path(entry)
        done = f"**stopped** · kept {len(audio) / SAMPLE_RATE:.1f} of {total:g} s" if stopped else f"**done** · {len(audio) / SAMPLE_RATE:.1f} s"
        saved = str(self.history.path(entry)) if entry else None
        yield (saved, done, waveform_figure(audio, None, segments), spectrogram_figure(audio, None, segments), json.dumps(record, indent=1),
               saved, seed, player.end(len(audio) / SAMPLE_RATE, stopped))

    def text_to_music(self, prompt, negative, seconds, seed, locked, *sampling):
        yield from self._play(lambda: self._text_request(self._take_seed, prompt, negative, seconds, seed, locked, *sampling))

    @staticmethod
    def _text_request(fresh, prompt, negative, seconds, seed, locked, *sampling) -> TextRequest:
        """The Text tab's controls as a request; ``fresh`` gives an unlocked seed."""
        return TextRequest(prompt, settings_from_controls(seconds, seed, locked, *sampling, negative=negative, fresh=fresh))

    def _take_seed(self) -> int:
        seed, self._upcoming_seed = self._upcoming_seed, random.randrange(SEED_RANGE)
        return seed

    def prepare_text(self, prompt, negative, seconds, seed, locked, *sampling) -> None:
        """Draw the next Text take's opening ahead while the user types or listens (``MusicLM.prepare``:
        a prompt that states a bpm otherwise waits for its tempo draft after the click). Nothing
        while a piece is being made (it would take the cores) or before the models are loaded;
        a prompt not yet valid prepares nothing."""
        if self._generating or self._model is None:
            return
        try:
            request = self._text_request(lambda: self._upcoming_seed, prompt, negative, seconds, seed, locked, *sampling)
        except (ValueError, gr.Error):
            return
        try:
            self._model.prepare(request)
        except Exception:  # only a look ahead: the click draws its own draft, and the page hears nothing of it
            log.exception("preparing the next take failed")

    def story_to_music(self, table, seed, locked, *sampling):
        segments = _story_rows(table)
        edges = np.cumsum([0.0] + [s for _, s in segments])
        shading = [(float(a), float(b), p) for (p, _), a, b in zip(segments, edges[:-1], edges[1:])]
        yield from self._play(lambda: StoryRequest(tuple(segments), settings_from_controls(edges[-1], seed, locked, *sampling)), shading)

    def track_hum(self, path):
        """The Hum tab's preview: the tracked pitch contour and the notes heard, before generating."""
        if not path:
            return None, ""
        try:
            pitch, melody = analyse_hum(load_audio(path))
        except AudioError as exc:
            raise refuse(str(exc)) from None
        self._tracked = {path: melody}  # the click that follows need not track it again
        notes = notes_heard(pitch)
        return pitch_figure(pitch.times, pitch.midi), f"**{len(notes)} notes:** " + " ".join(notes[:64]) + (" …" if len(notes) > 64 else "")

    def hum_to_music(self, hum, style, seconds, seed, locked, *sampling):
        if not hum:
            raise refuse("upload or record a hum or whistle first")
        yield from self._play(lambda: HumRequest(load_audio(hum), style, settings_from_controls(seconds, seed, locked, *sampling),
                                                 melody=self._tracked.get(hum)))

    def _clip(self, clip, use_last: bool, verb: str) -> np.ndarray:
        """The Continue tab's clip: an upload, a recording or the last output."""
        source = self.last if use_last else clip
        if not source:
            raise refuse(f"nothing to {verb} yet: generate something first" if use_last else f"upload or record a clip to {verb}")
        return load_audio(source)

    def continue_music(self, clip, use_last, prompt, seconds, seed, locked, *sampling):
        yield from self._play(lambda: ContinueRequest(self._clip(clip, use_last, "continue"), prompt,
                                                      settings_from_controls(seconds, seed, locked, *sampling)))

    def inpaint_music(self, clip, use_last, prompt, start, end, seed, locked, *sampling):
        settings = settings_from_controls(GenerationSettings().seconds, seed, locked, *sampling)  # the range sets the length
        yield from self._play(lambda: InpaintRequest(self._clip(clip, use_last, "inpaint"), start, end, prompt, settings),
                              [(float(start or 0), float(end or 0), "inpainted")])

    def style_music(self, prompt, prompt_weight, strength, match_tone, *sources_and_settings):
        """The Style tab: up to ``STYLE_CLIPS`` reference clips, each with its weight, an optional
        prompt with its own, how strongly the clips' style is followed and whether their tone is
        matched; the rest are the shared controls."""
        pairs, rest = sources_and_settings[:2 * STYLE_CLIPS], sources_and_settings[2 * STYLE_CLIPS:]
        seconds, seed, locked, *sampling = rest

        def request() -> StyleRequest:
            given = [(path, weight) for path, weight in zip(pairs[::2], pairs[1::2]) if path]
            if not given:
                raise ValueError("upload or record at least one reference clip")
            has_prompt = bool((prompt or "").strip())
            weights = ((prompt_weight,) if has_prompt else ()) + tuple(weight for _, weight in given)
            return StyleRequest(tuple(load_audio(path) for path, _ in given), prompt if has_prompt else None,
                                tuple(float(w or 0) for w in weights),
                                replace(settings_from_controls(seconds, seed, locked, *sampling), style_guidance=float(strength),
                                        tone_match=bool(match_tone)))

        yield from self._play(request)

    # -- live mode ----------------------------------------------------------------------------
    @staticmethod
    def live_direction(prompt, other, mix, bpm) -> Direction:
        """The Live tab's controls as a direction: the prompt, blended with the second one by the mix."""
        mix = float(mix or 0)
        blend = [(prompt or "", 1 - mix)] + ([(other, mix)] if (other or "").strip() else [])
        try:
            return Direction(tuple(blend), float(bpm) if bpm else None).checked()
        except ValueError as exc:
            raise refuse(str(exc)) from None

    def live_music(self, prompt, other, mix, bpm, seed, locked, *sampling):
        """The Live tab: music without end, steered while it plays (``steer_live``), until Stop.
        Yields the status line, the scrolling spectrogram, the seed and the player's updates."""
        direction = self.live_direction(prompt, other, mix, bpm)
        settings = settings_from_controls(GenerationSettings().seconds, seed, locked, *sampling)
        stream = LiveStream(self.model(), direction, settings, buffer=LIVE_BUFFER, prebuffer=0.0)  # the page plays from the first chunk
        with self._lock:
            if self._live is not None:
                self._live.stop()
            self._live, self._live_audio = stream, deque()
        player, chunks, drawn = PlayerStream(SAMPLE_RATE), iter(stream), 0.0
        seed = settings.seed
        try:
            for chunk in chunks:
                self._hold(chunk.audio)
                line = f"**live** · {chunk.seconds_done:.0f} s · {self._live_heading(stream)}"
                for update in player.chunks(_pcm16(chunk.audio)):
                    yield line, gr.skip(), seed, update
                    seed = gr.skip()
                if chunk.seconds_done - drawn >= PLOT_EVERY_SECONDS:
                    yield gr.skip(), self._live_view(stream), gr.skip(), gr.skip()
                    drawn = chunk.seconds_done
        except Exception as exc:  # a fault inside generation: say what happened, keep serving
            raise gr.Error(f"live generation failed: {exc}") from exc
        finally:  # Stop, or the page went away
            chunks.close()
        yield (f"**stopped** after {stream.seconds:.0f} s · keep the last minutes to History, or save the timeline", self._live_view(stream),
               gr.skip(), player.end(stream.seconds, True))

    def _hold(self, audio: np.ndarray) -> None:
        """Keep the live stream's last ``LIVE_KEEP_MINUTES``."""
        self._live_audio.append(audio)
        held = sum(map(len, self._live_audio))
        while held - len(self._live_audio[0]) >= LIVE_KEEP_MINUTES * 60 * SAMPLE_RATE:
            held -= len(self._live_audio.popleft())

    @staticmethod
    def _live_heading(stream: LiveStream) -> str:
        direction = stream.timeline[-1].direction if stream.timeline else None
        if direction is None:
            return ""
        mix = " + ".join(f"{p} ({w:.0%})" if len(direction.blend) > 1 else p for p, w in direction.blend)
        return mix + (f" · {direction.bpm:g} bpm" if direction.bpm else "")

    def _live_view(self, stream: LiveStream):
        """The spectrogram of the last ``LIVE_VIEW_SECONDS``, each change marked."""
        recent = np.concatenate(list(self._live_audio)) if self._live_audio else np.zeros(0, np.float32)
        shown = recent[-int(LIVE_VIEW_SECONDS * SAMPLE_RATE):]
        start = stream.seconds - len(shown) / SAMPLE_RATE
        rows = stream.timeline_record()["segments"]
        marks = [(max(start, r["start_s"]), r["start_s"] + r["seconds"], r["prompt"]) for r in rows if r["start_s"] + r["seconds"] > start]
        return spectrogram_figure(shown, LIVE_VIEW_SECONDS, marks, start=start)

    def steer_live(self, prompt, other, mix, bpm) -> str:
        """A change made while the stream plays: heard after the buffer ahead of the player."""
        direction = self.live_direction(prompt, other, mix, bpm)
        stream = self._live
        if stream is None or stream.stopped:
            return "press **Start live** first; the change will be its start"
        try:
            stream.steer(direction)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        return f"→ **{direction.prompt}** in about {LIVE_BUFFER:g} s"

    def stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()

    def keep_live(self, minutes) -> tuple:
        """The live stream's last ``minutes`` to History, with its timeline; (file, history rows)."""
        stream = self._live
        if stream is None or not self._live_audio:
            raise refuse("nothing live to keep yet: press Start live first")
        audio = np.concatenate(list(self._live_audio))[-int(float(minutes) * 60 * SAMPLE_RATE):]
        record = {"mode": "live", "prompt": stream.timeline[-1].direction.prompt, **asdict(stream.settings), "seconds": round(len(audio) / SAMPLE_RATE, 2),
                  "kept_from_s": round(stream.seconds - len(audio) / SAMPLE_RATE, 2), "timeline": stream.timeline_record(), "device": self.device}
        entry = self.history.add(audio, record)
        return str(self.history.path(entry)), self.history_rows()

    def live_timeline(self) -> str:
        """The live stream's timeline as a story JSON file (``python -m engine live --replay`` renders it again)."""
        if self._live is None or not self._live.timeline:
            raise refuse("nothing live yet: press Start live first")
        path = scratch_folder("live") / "live-timeline.json"
        path.write_text(json.dumps(self._live.timeline_record(), indent=1, ensure_ascii=False))
        return str(path)

    def record_here(self) -> str:
        """Desktop mode: a clip from this computer's microphone, saved like an upload."""
        try:
            audio = desktop.record(8.0)
        except desktop.DesktopAudioError as exc:
            raise refuse(str(exc)) from None
        path = scratch_folder("rec") / "recording.wav"
        save_audio(path, audio)
        return str(path)

    def play_here(self) -> None:
        if self.last is None:
            raise refuse("nothing to play yet: generate something first")
        try:
            desktop.play(load_audio(self.last))
        except desktop.DesktopAudioError as exc:
            raise refuse(str(exc)) from None

    def history_rows(self) -> list[list]:
        return [[e["created"], e["settings"].get("mode", "text"), summary(e["settings"]), e["seconds"], e["settings"].get("seed", ""), kept(e)]
                for e in self.history.entries()]

    def history_entry(self, evt: gr.SelectData):
        """A row picked: its audio, settings and file, and which entry the buttons act on."""
        entries = self.history.entries()
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not 0 <= row < len(entries):
            raise refuse("that history entry is gone; refresh the list")
        entry = entries[row]
        path = str(self.history.path(entry))
        return path, json.dumps(entry["settings"], indent=1), path, entry["audio"]

    def _picked(self, name: str | None) -> dict:
        if not name:
            raise refuse("pick a row of the history first")
        try:
            return self.history.find(name)
        except KeyError:
            raise refuse("that history entry is gone; refresh the list") from None

    def reuse(self, name: str | None) -> dict:
        """The picked entry's settings back in the controls (its seed locked, so the same
        settings make the same piece) and its tab opened."""
        settings = self._picked(name)["settings"]
        mode = settings.get("mode", "text")
        values = {"tab": "continue" if mode == "inpaint" else mode, "seed": settings["seed"], "locked": True,
                  "sampling": sampling_values(settings)}
        if mode == "story":
            values["story"] = [[s["prompt"], s["seconds"]] for s in settings["segments"]]
        else:
            values["seconds"] = settings["seconds"]
            values[{"text": "prompt", "hum": "style", "live": "live_prompt", "style": "style_prompt"}.get(mode, "new_prompt")] = settings.get("prompt") or ""
            if mode == "text":
                values["negative"] = settings.get("negative_prompt", "")
        return values

    def delete(self, name: str | None) -> list[list]:
        self.history.remove(self._picked(name)["audio"])
        return self.history_rows()

    def entry_path(self, name: str | None) -> str:
        return str(self.history.path(self._picked(name)))


def scratch_folder(kind: str) -> Path:
    """A fresh private folder (mode 0700) inside the studio's upload folder, which launch.py
    removes on exit; our own file names only, never a user's."""
    return Path(tempfile.mkdtemp(prefix=f"hummingbird-{kind}-", dir=os.environ.get("GRADIO_TEMP_DIR")))


def _story_rows(table) -> list[tuple[str, float]]:
    """The story editor's rows (prompt, seconds), blank rows skipped, checked by the engine."""
    rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
    rows = [r for r in rows if any(str(c).strip() for c in r if c is not None)]
    try:
        return check_story([(r[0], r[1]) for r in rows])
    except (ValueError, IndexError) as exc:
        raise refuse(str(exc)) from None


def story_file(table) -> str:
    """The editor as a story JSON file to download (the format ``--story`` reads)."""
    path = scratch_folder("story") / "story.json"
    path.write_text(story_json(_story_rows(table)))
    return str(path)


def story_table(path) -> list[list]:
    """A story JSON file → editor rows; data only, checked like any story."""
    if not path:
        raise refuse("choose a story JSON file")
    try:
        if Path(path).stat().st_size > 1_000_000:
            raise ValueError("a story file is small JSON; this one is over 1 MB")
        segments = parse_story(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise refuse(str(exc)) from None
    return [[p, s] for p, s in segments]


def story_from_table(table):
    """Table edits → the timeline (left as it is while the table is mid-edit and not yet valid)."""
    try:
        return story_value(_story_rows(table))
    except gr.Error:
        return gr.skip()


def _pcm16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


STORY_EXAMPLE = [["tender solo piano, slow tempo", 10.0], ["energetic rock with crunchy guitar and drums", 10.0],
                 ["calm ambient music with a warm synth pad", 10.0]]


def build_app(model: MusicLM | None = None, history: History | None = None, warm_up: bool = False, desktop: bool = False,
              device: str = "auto") -> gr.Blocks:
    studio = Studio(model, history, device)
    if warm_up:
        studio.warm_up_in_background()
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# 🐦 {TITLE}\n{INTRO}")
        picked = gr.State(None)  # the history entry the History buttons act on
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tabs() as tabs:
                    with gr.Tab("Text", id="text") as text_tab:
                        prompt = gr.Textbox(label="prompt", placeholder="describe the music: genre, instruments, mood, tempo …", lines=2,
                                            info='a bpm ("… 96 bpm") or a tempo word (slow, moderate, fast) sets the tempo',
                                            max_length=500, elem_id="prompt")
                        negative = gr.Textbox(label="avoid (optional)", placeholder="what the music should not sound like", max_length=500)
                        gr.Examples(EXAMPLES, inputs=prompt, label="try")
                        run_text = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Tab("Hum", id="hum") as hum_tab:
                        gr.Markdown("Upload or record a hummed or whistled tune (1–60 s); the music follows it in the style you describe.")
                        hum = gr.Audio(label="your tune: drop a file here, or switch to the microphone below", sources=["upload", "microphone"],
                                       type="filepath", elem_id="hum")
                        contour = gr.Plot(label="tracked melody")
                        notes = gr.Markdown("")
                        style = gr.Textbox(label="style", placeholder="e.g. jazz piano trio with brushes, 100 bpm", lines=1, max_length=500,
                                           value="warm piano and strings", elem_id="hum-style")
                        run_hum = gr.Button("Generate from the tune", variant="primary", elem_id="generate-hum")
                    with gr.Tab("Story", id="story") as story_tab:
                        gr.Markdown("One continuous piece whose description changes over time. Drag the blocks to reorder them, "
                                    "drag a block's right handle to change its length, and write each one's prompt in the table.")
                        timeline = story_timeline(STORY_EXAMPLE, elem_id="timeline")
                        story = gr.Dataframe(value=STORY_EXAMPLE, headers=["prompt", "seconds"], datatype=["str", "number"],
                                             column_count=(2, "fixed"), interactive=True, elem_id="story-table")
                        with gr.Row():
                            story_in = gr.File(label="import story JSON", file_types=[".json"], height=80)
                            story_out = gr.File(label="export", height=80)
                        with gr.Row():
                            export_story = gr.Button("Export JSON", size="sm")
                            run_story = gr.Button("Generate story", variant="primary", elem_id="generate-story")
                    with gr.Tab("Continue", id="continue") as continue_tab:
                        clip = gr.Audio(label="clip to continue (at least 1 s)", sources=["upload", "microphone"], type="filepath",
                                        elem_id="clip")
                        use_last = gr.Checkbox(label="continue the last output instead", value=False)
                        if desktop:
                            record_here = gr.Button("🎙 record 8 s from this computer's microphone", size="sm")
                        new_prompt = gr.Textbox(label="new prompt (optional: otherwise the clip's own style)", max_length=500)
                        run_continue = gr.Button("Continue", variant="primary", elem_id="generate-continue")
                        with gr.Row():
                            inpaint_start = gr.Number(value=2.0, label="regenerate from (s)", minimum=0)
                            inpaint_end = gr.Number(value=4.0, label="to (s)", minimum=0)
                            run_inpaint = gr.Button("Regenerate this range", elem_id="generate-inpaint")
                    with gr.Tab("Style", id="style") as style_tab:
                        gr.Markdown("New music in the style of your clips: drop one to three recordings (at least 1 s each), "
                                    "set how much each counts, and add words if you like. Nothing of a clip is copied: only its style goes in, "
                                    "its loudness (a hushed clip gives a hushed piece, unless the words say how loud) and its tone.")
                        style_clips, style_weights = [], []
                        with gr.Row():
                            for i in range(STYLE_CLIPS):
                                with gr.Column(min_width=160):
                                    style_clips.append(gr.Audio(label=f"reference {i + 1}", sources=["upload", "microphone"], type="filepath",
                                                                elem_id=f"style-clip-{i + 1}"))
                                    style_weights.append(gr.Slider(0, 1, value=1.0, step=0.05, label="how much it counts",
                                                                   elem_id=f"style-weight-{i + 1}"))
                        with gr.Row():
                            style_prompt = gr.Textbox(label="words to mix in (optional)", placeholder="e.g. with a flute lead, 100 bpm",
                                                      max_length=500, scale=3, elem_id="style-prompt")
                            style_prompt_weight = gr.Slider(0, 1, value=0.5, step=0.05, label="how much the words count", scale=2)
                        style_strength = gr.Slider(0, 10, value=GenerationSettings().style_guidance, step=0.5, elem_id="style-strength",
                                                   label="follow the clips' style (the words follow the prompt slider under Sampling)")
                        style_tone = gr.Checkbox(value=GenerationSettings().tone_match, elem_id="style-tone",
                                                 label="match the clips' tone (an equalizer brings the piece's spectral balance to theirs)")
                        run_style = gr.Button("Generate in this style", variant="primary", elem_id="generate-style")
                    with gr.Tab("Live", id="live") as live_tab:
                        gr.Markdown("Music without end that you steer while it plays: change the words, the blend or the tempo and "
                                    f"the music follows after about {LIVE_BUFFER:g} s. Press Enter in a box (or Apply) to change it.")
                        with gr.Row():
                            live_prompt = gr.Textbox(label="prompt", value="warm lo-fi hip hop with mellow keys, 85 bpm", max_length=500, scale=3,
                                                     elem_id="live-prompt")
                            live_other = gr.Textbox(label="blend with (optional)", placeholder="a second description to mix in", max_length=500,
                                                    scale=2, elem_id="live-other")
                        with gr.Row():
                            live_mix = gr.Slider(0, 1, value=0.5, step=0.05, label="blend: 0 = the prompt alone, 1 = the second alone",
                                                 elem_id="live-mix")
                            live_bpm = gr.Number(value=None, label="tempo in bpm, 40–240 (0: the prompt's own)", elem_id="live-bpm")
                        with gr.Row():
                            live_start = gr.Button("▶ Start live", variant="primary", elem_id="live-start")
                            live_apply = gr.Button("Apply change", elem_id="live-apply")
                            live_stop = gr.Button("■ Stop live", variant="stop", elem_id="live-stop")
                        live_status = gr.Markdown("", elem_id="live-status")
                        live_view = gr.Plot(label="the last 10 s (each change marked)")
                        with gr.Row():
                            keep_minutes = gr.Slider(0.5, LIVE_KEEP_MINUTES, value=2, step=0.5, label="keep the last … minutes")
                            keep_live = gr.Button("Keep to History", elem_id="live-keep")
                            save_timeline = gr.Button("Save the timeline (JSON)", elem_id="live-timeline")
                        live_file = gr.File(label="download", height=80)
                    with gr.Tab("History", id="history") as history_tab:
                        table = gr.Dataframe(headers=["created", "mode", "what", "seconds", "seed", "kept"], value=studio.history_rows,
                                             interactive=False, wrap=True, column_widths=["14%", "8%", "48%", "8%", "10%", "12%"],
                                             elem_id="history-table")
                        with gr.Row():
                            reuse = gr.Button("↺ reuse its settings", size="sm", elem_id="history-reuse")
                            send = gr.Button("→ continue from it", size="sm", elem_id="history-continue")
                            delete = gr.Button("🗑 delete", size="sm", variant="stop", elem_id="history-delete")
                            refresh_history = gr.Button("refresh", size="sm")
                        with gr.Row():
                            past_audio = gr.Audio(label="listen", interactive=False)
                            with gr.Column():
                                past_settings = gr.Code(label="settings", language="json")
                                past_file = gr.File(label="download")
                    with gr.Tab("Models", id="models") as models_tab:
                        status = gr.Markdown(status_markdown(), elem_id="model-status")
                        refresh = gr.Button("Check again", size="sm")
                        with gr.Accordion("Model card: how each part was trained and how well it works", open=False):
                            gr.Markdown(model_card_markdown())
                        with gr.Accordion("For developers: training a missing part", open=False):
                            gr.Markdown(training_markdown())
            with gr.Column(scale=2) as controls:  # what shapes the next piece: hidden where nothing is made, so those tabs get the width
                seconds = gr.Slider(1, MAX_SECONDS, value=10, step=0.5, label="duration (s)", elem_id="duration")
                gr.HTML("", html_template='<div id="duration-note" role="status"></div>', js_on_load=(Path(__file__).parent / "limits.js").read_text(),
                        padding=False)
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="seed (the last one used)", minimum=0, maximum=SEED_RANGE - 1, elem_id="seed")
                    locked = gr.Checkbox(label="🔒 keep this seed", value=False, elem_id="seed-lock",
                                         info="off: every click makes a new take")
                with gr.Row():
                    preset = gr.Radio(list(SAMPLING_PRESETS), value="quality", label="preset", scale=2)
                    device = gr.Dropdown(available_devices(), value=studio.device, label="device", scale=1, elem_id="device",
                                         info="cuda appears when PyTorch sees a GPU")
                with gr.Accordion("fine control", open=False):
                    # stage 3 is off (GenerationSettings.fine_stage), so its temperature is carried but not shown
                    temps = [gr.Slider(0, 2, value=v, step=0.05, label=f"adventurousness: {what}", visible=shown)
                             for what, v, shown in zip(("melody and rhythm (stage 1 temperature)", "sound (stage 2 temperature)",
                                                        "detail (stage 3 temperature)"), SAMPLING_PRESETS["quality"].temperatures, (True, True, False))]
                    top_k = gr.Slider(0, 1024, value=0, step=1, label="choose only among the k likeliest tokens (0 = all)")
                    guidance = gr.Slider(0, 10, value=3.0, step=0.5, label="follow the prompt: melody and rhythm (stage 1 guidance)")
                    coarse_guidance = gr.Slider(0, 10, value=1.0, step=0.5, label="follow the prompt: sound (stage 2 guidance; 1 = off)")
                    level = gr.Checkbox(value=True, label="loud and quiet words set the loudness", elem_id="level-stage",
                                        info="\"hushed\", \"thunderous\", \"at full volume\"…; off: every piece at the models' own level")
                stop = gr.Button("Stop (keeps what is made)", variant="stop", elem_id="stop")
                if desktop:
                    play_here = gr.Button("🔊 play the last output on this computer", size="sm")
                progress = gr.Markdown("", elem_id="progress")
        live = live_player(elem_id="live-player")
        audio = gr.Audio(label="the finished piece: replay, scrub, download", autoplay=False, interactive=False, elem_id="output-audio")
        waveform = gr.Plot(label="waveform")
        spectrogram = gr.Plot(label="spectrogram")
        gr.HTML("", js_on_load=(Path(__file__).parent / "plot_cleanup.js").read_text(), padding=False)  # frees the charts gradio replaces
        with gr.Row():
            settings_json = gr.Code(label="settings (reproduce with these)", language="json")
            download = gr.File(label="download")

        sampling = [*temps, top_k, guidance, coarse_guidance, level]
        outputs = [audio, progress, waveform, spectrogram, settings_json, download, seed, live]
        piece = dict(outputs=outputs, concurrency_limit=1, show_progress=LIVE_PROGRESS)  # what every Generate button shares
        events = [
            run_text.click(studio.text_to_music, [prompt, negative, seconds, seed, locked, *sampling], api_name="text", **piece),
            run_hum.click(studio.hum_to_music, [hum, style, seconds, seed, locked, *sampling], api_name="hum", **piece),
            run_story.click(studio.story_to_music, [story, seed, locked, *sampling], api_name="story", **piece),
            run_continue.click(studio.continue_music, [clip, use_last, new_prompt, seconds, seed, locked, *sampling], api_name="continue", **piece),
            run_style.click(studio.style_music, [style_prompt, style_prompt_weight, style_strength, style_tone,
                                                 *(x for pair in zip(style_clips, style_weights) for x in pair),
                                                 seconds, seed, locked, *sampling], api_name="style", **piece),
            run_inpaint.click(studio.inpaint_music, [clip, use_last, new_prompt, inpaint_start, inpaint_end, seed, locked, *sampling],
                              api_name="inpaint", **piece),
        ]
        for event in events:
            event.then(studio.history_rows, outputs=table, api_name=False)
        # beside a piece, not behind it; raw values (preprocess off): a control the page has yet to clamp (a duration of 400)
        # must not raise gradio's own error badges for what is only a look ahead. Every change is sent and two run at once,
        # so the newest prompt's draft starts at once and abandons the one drawn for the prompt before it
        ahead = dict(trigger_mode="multiple", concurrency_limit=2, concurrency_id="prepare", show_progress="hidden", api_name=False,
                     preprocess=False)
        text_controls = [prompt, negative, seconds, seed, locked, *sampling]
        for changed in (prompt.change, negative.change, seconds.change, locked.change):
            changed(studio.prepare_text, text_controls, **ahead)
        events[0].then(studio.prepare_text, text_controls, **ahead)  # the next take, while this one plays
        stop.click(studio.stop, api_name="stop", queue=False)
        for heard in (hum.stop_recording, hum.upload):
            heard(studio.track_hum, hum, [contour, notes], api_name=False)
        live_controls = [live_prompt, live_other, live_mix, live_bpm]
        live_start.click(studio.live_music, [*live_controls, seed, locked, *sampling], [live_status, live_view, seed, live], concurrency_limit=1,
                         show_progress=LIVE_PROGRESS, api_name="live")
        for changed in (live_prompt.submit, live_other.submit, live_bpm.submit, live_mix.release, live_apply.click):
            changed(studio.steer_live, live_controls, live_status, queue=False, api_name="live_steer" if changed == live_apply.click else False)
        live_stop.click(studio.stop_live, api_name="live_stop", queue=False)
        keep_live.click(studio.keep_live, keep_minutes, [live_file, table], api_name="live_keep")
        save_timeline.click(studio.live_timeline, outputs=live_file, api_name="live_timeline")
        for tab, length_matters, makes_music in ((text_tab, True, True), (hum_tab, True, True), (story_tab, False, True), (continue_tab, True, True),
                                                 (style_tab, True, True), (live_tab, False, True), (history_tab, False, False), (models_tab, False, False)):
            tab.select(lambda shown=length_matters, music=makes_music: (gr.Slider(visible=shown), gr.Column(visible=music)), outputs=[seconds, controls],
                       api_name=False)  # a story's blocks set its length
        device.change(studio.use_device, device, progress, api_name="device")
        preset.change(preset_values, preset, sampling, api_name=False)
        timeline.input(story_rows, timeline, story, api_name=False)  # user edits only: no ping-pong between the two
        story.input(story_from_table, story, timeline, api_name=False)
        story_in.upload(story_table, story_in, story, api_name=False).then(story_from_table, story, timeline, api_name=False)
        export_story.click(story_file, story, story_out, api_name=False)
        refresh_history.click(studio.history_rows, outputs=table, api_name="history")
        table.select(studio.history_entry, outputs=[past_audio, past_settings, past_file, picked], api_name=False)

        reused = {"prompt": prompt, "negative": negative, "style": style, "new_prompt": new_prompt, "style_prompt": style_prompt, "live_prompt": live_prompt, "story": story,
                  "seconds": seconds, "seed": seed, "locked": locked}

        def reuse_settings(name):
            values = studio.reuse(name)
            updates = {reused[k]: v for k, v in values.items() if k in reused}
            updates.update(zip(sampling, values["sampling"]))
            updates[tabs], updates[controls] = gr.Tabs(selected=values["tab"]), gr.Column(visible=True)  # selecting a tab from code fires no select
            updates[seconds] = (gr.Slider(value=values["seconds"], visible=True) if "seconds" in values else gr.Slider(visible=False))
            if "story" in values:
                updates[timeline] = story_value(values["story"])
            return updates

        reuse.click(reuse_settings, picked, [tabs, controls, timeline, *reused.values(), *sampling], api_name=False)
        send.click(lambda name: (studio.entry_path(name), False, gr.Tabs(selected="continue"), gr.Column(visible=True), gr.Slider(visible=True)), picked,
                   [clip, use_last, tabs, controls, seconds], api_name=False)
        delete.click(studio.delete, picked, table, api_name=False).then(lambda: (None, "", None, None), outputs=[past_audio, past_settings,
                                                                                                              past_file, picked], api_name=False)
        refresh.click(status_markdown, outputs=status, api_name="model_status")
        if desktop:
            record_here.click(studio.record_here, outputs=clip, api_name=False)
            play_here.click(studio.play_here, api_name=False)
    app.queue(max_size=16)
    return app
