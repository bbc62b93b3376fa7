"""``python -m engine data build``: the captioned, ground-truthed training corpus.

Layout of a corpus folder::

    audio/clip000123.flac        the full arrangement, 24 kHz mono, at the loudness its music calls for (data/dynamics.py)
    melody/clip000123.flac       the lead line alone on a voice/whistle-like patch
    midi/clip000123.mid          the arrangement as General MIDI (all parts)
    meta/clip000123.json         one clip's ground truth and caption (lets a build resume)
    train.jsonl, test.jsonl      all clips' records, in order
    manifest.json                corpus statistics and provenance

Every clip is a pure function of (corpus seed, clip index), so a corpus is reproducible and
clips render in any order on any number of worker processes.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..files import atomic_write
from .arranger import Arrangement, Note, Part, arrange, sample_spec
from .captions import INSTRUMENT_NAMES, KIT_NAMES, write_caption
from .dynamics import dynamics_word, loudness_target
from .genres import GENRES, RENDITION_PATCHES
from .melodies import INDEX_PATH
from .render import SAMPLE_RATE, find_soundfont, normalize_loudness, render, synthesize

TEST_EVERY = 10  # every 10th clip is a test clip
RENDITION_REGISTERS = {53: (50, 74), 52: (50, 74), 54: (50, 74), 78: (72, 96), 79: (67, 91), 75: (62, 86)}


@dataclass(frozen=True)
class BuildConfig:
    out: Path
    hours: float
    seed: int = 0
    clip_seconds: float = 20.0
    workers: int = 2

    @property
    def n_clips(self) -> int:
        return max(1, int(np.ceil(self.hours * 3600 / self.clip_seconds)))


def corpus_version() -> str:
    """Fingerprint of the code and melody index that make clips: resume never mixes versions."""
    h = hashlib.sha1()
    for path in sorted(Path(__file__).parent.glob("*.py")) + [INDEX_PATH]:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def read_records(corpus: Path, split: str) -> list[dict]:
    """The clip records of one split of a built corpus."""
    path = Path(corpus) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no corpus split at {path}; build one with: python -m engine data build --out {corpus}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def pitch_class_roll(corpus: Path, record: dict, frames: int, rate: float) -> np.ndarray:
    """(12, frames) 0/1: which pitch classes the clip's score sounds in each frame at ``rate`` Hz
    (every pitched part; drums have no pitch class) — the ground truth of the notes."""
    import pretty_midi

    roll = pretty_midi.PrettyMIDI(str(Path(corpus) / record["midi"])).get_piano_roll(fs=rate)[:, :frames] > 0
    roll = np.pad(roll, ((0, 4), (0, frames - roll.shape[1])))  # 128 → 132 keys: eleven octaves of twelve
    return roll.reshape(11, 12, frames).any(0).astype(np.float32)


def clip_split(index: int) -> str:
    return "test" if index % TEST_EVERY == TEST_EVERY - 1 else "train"


def clip_seed(corpus_seed: int, index: int) -> int:
    return corpus_seed * 1_000_003 + index


def instrument_name(program: int, is_drum: bool) -> str:
    return (KIT_NAMES if is_drum else INSTRUMENT_NAMES)[program][0][0]


def melody_rendition(arr: Arrangement, rng: np.random.Generator) -> tuple[Part, int]:
    """The lead line alone on a hum-like patch, moved by octaves into that patch's range.

    Test clips use patches never heard in training, so hum evaluation meets new timbres."""
    patches = RENDITION_PATCHES[arr.spec.split]
    program = int(patches[rng.integers(len(patches))])
    lo, hi = RENDITION_REGISTERS[program]
    median = float(np.median([n.pitch for n in arr.melody]))
    shift = 12 * int(round(((lo + hi) / 2 - median) / 12))
    part = Part("melody", program, False, volume=110, reverb=20)
    part.notes = [Note(n.start, n.end, n.pitch + shift, n.velocity) for n in arr.melody]
    return part, shift


def ground_truth(arr: Arrangement) -> dict:
    spec = arr.spec
    genre = GENRES[spec.genre]
    return {
        "seed": spec.seed,
        "split": spec.split,
        "seconds": spec.seconds,
        "sample_rate": SAMPLE_RATE,
        "genre": spec.genre,
        "mood": spec.mood,
        "tempo": spec.tempo,
        "meter": genre.meter,
        "key": {"tonic": spec.key.tonic, "mode": spec.key.mode, "name": spec.key.name},
        "progression": spec.progression,
        "melody_source": spec.melody_source,
        "beats": [round(t, 4) for t in arr.beats],
        "downbeats": [round(t, 4) for t in arr.downbeats],
        "chords": [
            {"start": round(s, 4), "end": round(e, 4), "root": c.root, "quality": c.quality, "label": c.label}
            for s, e, c in arr.chords
        ],
        "melody": [
            {"onset": round(n.start, 4), "duration": round(n.end - n.start, 4), "pitch": n.pitch, "velocity": n.velocity}
            for n in arr.melody
        ],
        "instruments": [
            {"role": p.role, "program": p.program, "is_drum": p.is_drum, "name": instrument_name(p.program, p.is_drum)}
            for p in arr.parts
        ],
        "sections": [{"name": n, "start": round(s, 4), "end": round(e, 4)} for n, s, e in arr.sections],
    }


def caption_for(arr: Arrangement, lufs: float) -> dict:
    """The clip's caption, which names its dynamics when the render at ``lufs`` is clearly soft or loud."""
    spec = arr.spec
    genre = GENRES[spec.genre]
    rng = np.random.default_rng([spec.seed, 2])
    instruments = {p.role: (p.program, p.is_drum) for p in arr.parts if p.role in ("lead", "chords", "bass", "drums", "pad")}
    caption = write_caption(
        rng, spec.split, spec.genre, spec.mood,
        descriptor=genre.descriptors[rng.integers(len(genre.descriptors))],
        texture=genre.texture, bpm=spec.tempo, key_name=spec.key.name, instruments=instruments, dynamics=dynamics_word(lufs),
    )
    return {"caption": caption.text, "aspects": list(caption.aspects)}


def write_midi(arr: Arrangement, path: Path) -> None:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=float(arr.spec.tempo))
    for part in arr.parts:
        inst = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum, name=part.role)
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in part.notes]
        pm.instruments.append(inst)
    atomic_write(path, lambda tmp: pm.write(str(tmp)))


def _write_audio(path: Path, audio: np.ndarray) -> None:
    atomic_write(path, lambda tmp: sf.write(str(tmp), audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC"))


def build_clip(job: tuple[Path, int, int, float, str, str]) -> dict:
    out, corpus_seed, index, seconds, soundfont, version = job
    clip_id = f"clip{index:06d}"
    meta_path = out / "meta" / f"{clip_id}.json"
    seed = clip_seed(corpus_seed, index)
    if meta_path.exists():  # resume: a finished clip of the same seed and length is final
        record = json.loads(meta_path.read_text())
        if (record["seed"], record["seconds"], record["corpus_version"]) == (seed, seconds, version):
            return record
    t0 = time.perf_counter()
    spec = sample_spec(seed, clip_split(index), seconds)
    arr = arrange(spec)
    notes_per_second = sum(len(p.notes) for p in arr.parts) / seconds
    target = loudness_target(spec.genre, spec.mood, notes_per_second, intro=not arr.melody, rng=np.random.default_rng([spec.seed, 4]))
    audio, lufs = render(arr, Path(soundfont), target)
    record = {
        "id": clip_id,
        "corpus_version": version,
        "audio": f"audio/{clip_id}.flac",
        "midi": f"midi/{clip_id}.mid",
        **caption_for(arr, lufs),
        **ground_truth(arr),
        "loudness_lufs": round(lufs, 2),  # measured: below loudness_target_lufs where the peak ceiling held it back
        "loudness_target_lufs": round(target, 2),
        "peak": round(float(np.max(np.abs(audio))), 4),
        "rendition": None,  # a clip cropped inside the intro has no lead line to hum
    }
    _write_audio(out / record["audio"], audio)
    if arr.melody:
        rendition, shift = melody_rendition(arr, np.random.default_rng([spec.seed, 3]))
        melody_audio, _ = normalize_loudness(synthesize([rendition], seconds, Path(soundfont)))
        record["rendition"] = {
            "audio": f"melody/{clip_id}.flac",
            "program": rendition.program,
            "name": instrument_name(rendition.program, False),
            "octave_shift": shift,
        }
        _write_audio(out / record["rendition"]["audio"], melody_audio)
    write_midi(arr, out / record["midi"])
    record["render_s"] = round(time.perf_counter() - t0, 3)
    atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(record)))
    return record


def build(cfg: BuildConfig, progress: bool = True) -> dict:
    """Render the whole corpus on ``cfg.workers`` processes; returns the manifest."""
    out = cfg.out
    for sub in ("audio", "melody", "midi", "meta"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    soundfont = str(find_soundfont())
    version = corpus_version()
    jobs = [(out, cfg.seed, i, cfg.clip_seconds, soundfont, version) for i in range(cfg.n_clips)]
    t0 = time.perf_counter()
    records: list[dict] = []
    with Pool(cfg.workers) as pool:
        results = pool.imap(build_clip, jobs, chunksize=1)
        if progress:
            results = tqdm(results, total=len(jobs), desc="rendering", unit="clip")
        records.extend(results)
    wall = time.perf_counter() - t0
    for split in ("train", "test"):
        lines = "".join(json.dumps(r) + "\n" for r in records if r["split"] == split)
        atomic_write(out / f"{split}.jsonl", lambda tmp: tmp.write_text(lines))
    manifest = corpus_manifest(records, cfg, soundfont, wall)
    atomic_write(out / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    return manifest


def corpus_manifest(records: list[dict], cfg: BuildConfig, soundfont: str, wall_s: float) -> dict:
    hours = Counter()
    programs, kits = Counter(), Counter()
    for r in records:
        hours[r["genre"]] += r["seconds"] / 3600
        for inst in r["instruments"]:
            (kits if inst["is_drum"] else programs)[f"{inst['program']:03d} {inst['name']}"] += 1
    audio_s = sum(r["seconds"] for r in records)
    tempi = Counter(f"{10 * (r['tempo'] // 10)}-{10 * (r['tempo'] // 10) + 9}" for r in records)
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "corpus_version": records[0]["corpus_version"] if records else None,
        "soundfont": Path(soundfont).name,
        "sample_rate": SAMPLE_RATE,
        "clips": len(records),
        "splits": dict(Counter(r["split"] for r in records)),
        "audio_hours": round(audio_s / 3600, 4),
        "wall_s": round(wall_s, 1),
        "realtime_factor": round(wall_s / audio_s, 5) if audio_s else None,
        "genres": len(hours),
        "hours_per_genre": {g: round(h, 4) for g, h in sorted(hours.items())},
        "programs": len(programs),
        "program_histogram": dict(programs.most_common()),
        "drum_kits": dict(kits.most_common()),
        "keys": len({r["key"]["name"] for r in records}),
        "key_histogram": dict(Counter(r["key"]["name"] for r in records).most_common()),
        "tempo_histogram": dict(sorted(tempi.items())),
        "mood_histogram": dict(Counter(r["mood"] for r in records).most_common()),
        "loudness_histogram_lufs": dict(sorted(Counter(f"{4 * int(r['loudness_lufs'] // 4)}" for r in records if r["loudness_lufs"] > -70).items(), key=lambda kv: int(kv[0]))),
        "melody_sources": dict(Counter("music21" if r["melody_source"] != "generated" else "generated" for r in records)),
        "rendition_patches": dict(Counter(r["rendition"]["name"] for r in records if r["rendition"])),
        "clips_without_melody": sum(r["rendition"] is None for r in records),
    }
