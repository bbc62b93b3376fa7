"""Recorded music beside the synthesized corpus: produced, mixed recordings that no General MIDI
render sounds like. Debian ships about 11 hours of free game soundtracks; six packages may train
the models that learn from audio alone (the codec), three are kept for evaluation only."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, to_mono_24k

# Debian wesnoth-1.16-music, ufoai-music, warzone2100-music, nexuiz-music, hyperrogue-music, planetblupi-music-ogg
# (ufoai and nexuiz keep theirs inside .pk3 zip archives, read in place)
TRAINING_MUSIC = ("/usr/share/games/wesnoth/1.16/data/core/music", "/usr/share/games/ufoai/base", "/usr/share/games/warzone2100/music",
                  "/usr/share/games/nexuiz/data", "/usr/share/hyperrogue/music", "/usr/share/planetblupi/music")
# Debian asc-music, singularity-music and drascula-music: never trained on
HELD_OUT_MUSIC = ("/usr/share/games/asc/music", "/usr/share/games/singularity/music", "/usr/share/scummvm/drascula/audio")
AUDIO_SUFFIXES = (".ogg", ".opus", ".mp3", ".flac", ".wav")
ARCHIVE_SUFFIXES = (".pk3", ".zip")
LEVEL_RMS = 0.1  # -20 dBFS: about the middle of the corpus renders' loudness


def music_files(folders: tuple[str, ...]) -> list[list[Path]]:
    """The audio files of each folder that exists, sorted by name."""
    return [sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES) for folder in folders if Path(folder).is_dir()]


def recordings(folders: tuple[str, ...], count: int) -> list[Path]:
    """Up to ``count`` audio files, taken in turn from each folder, so that every source is heard."""
    lists = music_files(folders)
    if not any(lists):
        raise FileNotFoundError(f"no recordings in {', '.join(folders)}; install Debian's asc-music, singularity-music and "
                                "drascula-music, or pass --audio FOLDER")
    picked = [files[i] for i in range(max(map(len, lists))) for files in lists if i < len(files)]
    return picked[:count]


def middle_excerpt(source, seconds: float) -> np.ndarray:
    """The middle ``seconds`` of a recording (a path or an open file) as 24 kHz mono float32, read
    without decoding the rest of it."""
    with sf.SoundFile(source) as f:
        length = int(seconds * f.samplerate)
        f.seek(max(0, f.frames // 2 - length // 2))
        audio, sr = f.read(length, dtype="float32", always_2d=True), f.samplerate
    return to_mono_24k(audio, sr)


def training_excerpts(folders: tuple[str, ...] = TRAINING_MUSIC, seconds: float = 60.0) -> list[np.ndarray]:
    """The middle ``seconds`` of every recording in ``folders``, 24 kHz mono int16 at a common
    level, for training crops. Refuses the held-out folders: evaluation must hear music that
    no model learned from."""
    resolved = {str(Path(f).resolve()) for f in folders}
    overlap = [f for f in HELD_OUT_MUSIC if any(r == str(Path(f).resolve()) or r.startswith(str(Path(f).resolve()) + "/") for r in resolved)]
    if overlap:
        raise ValueError(f"{', '.join(overlap)} is kept for evaluation (eval recordings); train on other music")
    sources = list(_openers(folders))
    if not sources:
        raise FileNotFoundError(f"no recordings in {', '.join(folders)}; install Debian's wesnoth-1.16-music, ufoai-music, "
                                "warzone2100-music, nexuiz-music, hyperrogue-music and planetblupi-music-ogg, or name folders")
    excerpts = []
    for open_file in sources:
        with open_file() as handle:
            mono = middle_excerpt(handle, seconds)
        rms = float(np.sqrt(np.mean(mono ** 2)))
        if len(mono) < SAMPLE_RATE or rms < 1e-3:  # too short or silent: nothing to learn
            continue
        mono = mono * min(LEVEL_RMS / rms, 0.99 / float(np.abs(mono).max()))
        excerpts.append((mono * 32767).astype(np.int16))
    return excerpts


def has_recordings(folders: tuple[str, ...]) -> bool:
    """Whether ``folders`` hold a recording ``training_excerpts`` would read (zip archives included),
    found without reading the rest."""
    return next(_openers(folders), None) is not None


def _openers(folders: tuple[str, ...]) -> Iterator[Callable[[], io.IOBase]]:
    """One opener per recording: the audio files of each folder and the audio inside its zip archives."""
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).rglob("*")):
            suffix = path.suffix.lower()
            if suffix in AUDIO_SUFFIXES:
                yield lambda path=path: open(path, "rb")
            elif suffix in ARCHIVE_SUFFIXES:
                with zipfile.ZipFile(path) as archive:
                    members = sorted(m for m in archive.namelist() if Path(m).suffix.lower() in AUDIO_SUFFIXES)
                for member in members:
                    yield lambda path=path, member=member: io.BytesIO(_member(path, member))


def _member(archive: Path, member: str) -> bytes:
    with zipfile.ZipFile(archive) as opened:
        return opened.read(member)
