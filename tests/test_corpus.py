"""The corpus: valid MIDI for every genre, deterministic audio, honest ground truth and captions."""
import re

import numpy as np
import pytest
import soundfile as sf

from engine.data.arranger import arrange, held_out_sequences, sample_spec
from engine.data.build import build_clip, caption_for, clip_split, corpus_version, write_midi
from engine.data.captions import GENRE_NAMES, INSTRUMENT_NAMES, KIT_NAMES, all_synonyms
from engine.data.genres import GENRES, HELD_OUT_PROGRESSIONS
from engine.data.melodies import load_index
from engine.data.render import PEAK_CEILING, SAMPLE_RATE, find_soundfont, render, synthesize
from engine.prompts import TEMPO_WORDS, tempo_bucket

from .conftest import make_spec

N_SPECS = 300


@pytest.fixture(scope="module")
def arrangements():
    return [arrange(sample_spec(seed, clip_split(seed), 20.0)) for seed in range(N_SPECS)]


@pytest.mark.parametrize("genre", sorted(GENRES))
def test_every_genre_yields_valid_midi(genre, tmp_path):
    import pretty_midi

    for mode in ("major", "minor"):
        arr = arrange(make_spec(genre, mode))
        path = tmp_path / f"{mode}.mid"
        write_midi(arr, path)
        pm = pretty_midi.PrettyMIDI(str(path))
        roles = {inst.name for inst in pm.instruments}
        assert {"lead", "bass", "chords"} <= roles
        assert ("drums" in roles) == bool(GENRES[genre].grooves) or genre == "orchestral"
        for inst, part in zip(pm.instruments, arr.parts):
            assert inst.program == part.program and inst.is_drum == part.is_drum
            assert inst.notes, f"{genre}/{mode}: empty {inst.name}"
            for n in inst.notes:
                assert 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127
                assert 0 <= n.start < n.end
        assert arr.melody and arr.chords and arr.beats


def test_rendering_is_deterministic_for_a_seed(tmp_path):
    soundfont, version = str(find_soundfont()), corpus_version()
    records = []
    for run in ("a", "b"):
        out = tmp_path / run
        for sub in ("audio", "melody", "midi", "meta"):
            (out / sub).mkdir(parents=True)
        records.append(build_clip((out, 3, 5, 6.0, soundfont, version)))
    a, _ = sf.read(tmp_path / "a" / records[0]["audio"])
    b, _ = sf.read(tmp_path / "b" / records[1]["audio"])
    assert np.array_equal(a, b)
    strip = lambda r: {k: v for k, v in r.items() if k != "render_s"}  # noqa: E731
    assert strip(records[0]) == strip(records[1])
    record = records[0]  # rendered at the loudness its music calls for, unless the peak ceiling held it back
    assert record["loudness_lufs"] == pytest.approx(record["loudness_target_lufs"], abs=0.5) or record["peak"] >= PEAK_CEILING - 1e-3
    # Rebuilding the same folder with another corpus seed re-renders instead of resuming.
    other = build_clip((tmp_path / "a", 4, 5, 6.0, soundfont, version))
    c, _ = sf.read(tmp_path / "a" / other["audio"])
    assert other["seed"] != records[0]["seed"] and not np.array_equal(a, c)
    # ... and so does a change of the corpus code (another version fingerprint).
    stale = build_clip((tmp_path / "a", 4, 5, 6.0, soundfont, "other-code"))
    assert stale["corpus_version"] == "other-code"


def test_rendered_audio_is_24k_mono_normalized_and_never_clipped():
    for genre in ("metal", "chiptune", "ambient"):
        audio, lufs = render(arrange(make_spec(genre, seconds=6.0)))
        assert audio.ndim == 1 and audio.shape[0] == 6 * SAMPLE_RATE
        assert np.isfinite(audio).all()
        assert np.max(np.abs(audio)) <= PEAK_CEILING + 1e-6
        assert -26 < lufs <= -17.5


@pytest.mark.parametrize("genre", ["rock", "pop", "funk", "techno", "hip hop", "metal", "country", "house", "blues"])
def test_ground_truth_beats_match_rendered_drum_onsets(genre):
    """Where the kit strikes a beat, librosa finds an onset within 30 ms of the ground-truth beat."""
    import librosa

    arr = arrange(make_spec(genre, seconds=12.0))
    drums = arr.part("drums")
    audio = synthesize([drums], arr.spec.seconds)  # the kit alone: guitars mask kick attacks
    lead_in = 0.25  # silence before t=0 so the detector has a frame to compare the first hit with
    padded = np.concatenate([np.zeros(int(lead_in * SAMPLE_RATE), np.float32), audio])
    envelope = librosa.onset.onset_strength(y=padded, sr=SAMPLE_RATE, hop_length=128, n_fft=512)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=128, units="time") - lead_in
    loud = {36, 38, 39}  # kick, snare, clap: the hits that define the beat
    hit_beats = [b for b in arr.beats if any(n.pitch in loud and abs(n.start - b) < 0.03 for n in drums.notes)]
    assert len(hit_beats) >= 8
    matched = [b for b in hit_beats if np.min(np.abs(onsets - b)) <= 0.030]
    assert len(matched) / len(hit_beats) >= 0.9, f"{genre}: {len(matched)}/{len(hit_beats)}"


LOUDNESS_CASES = (-31.0, -25.0, -18.0, -14.5, -12.5)  # one per band of prompts.DYNAMICS_RANGES, and the unsaid middle


def test_captions_state_the_true_tempo_instruments_and_dynamics(arrangements):
    from engine.data.captions import DYNAMICS_NAMES
    from engine.data.dynamics import dynamics_word

    said = 0
    for i, arr in enumerate(arrangements):
        lufs = LOUDNESS_CASES[i % len(LOUDNESS_CASES)]
        cap = caption_for(arr, lufs)
        band = dynamics_word(lufs)
        wrong = {w for key, syn in DYNAMICS_NAMES.items() if key != band for w in all_synonyms(syn)}
        assert not wrong & set(cap["aspects"]), (lufs, cap["aspects"])
        if band and set(all_synonyms(DYNAMICS_NAMES[band])) & set(cap["aspects"]):
            said += 1
            assert any(w in cap["caption"] or w.capitalize() in cap["caption"] for w in all_synonyms(DYNAMICS_NAMES[band])), cap["caption"]
        spec = arr.spec
        assert f"{spec.tempo} bpm" in cap["aspects"]
        for number in re.findall(r"(\d+) (?:bpm|BPM|beats per minute)", cap["caption"]):
            assert int(number) == spec.tempo
        bucket = tempo_bucket(spec.tempo)
        wrong = {w for b, syn in TEMPO_WORDS.items() if b != bucket for w in all_synonyms(syn)}
        assert not any(a == f"{w} tempo" for a in cap["aspects"] for w in wrong)
        text = " ".join(cap["aspects"]).lower()
        for part in arr.parts:
            if part.role not in ("lead", "chords", "bass", "drums", "pad"):
                continue
            names = all_synonyms((KIT_NAMES if part.is_drum else INSTRUMENT_NAMES)[part.program])
            assert any(n.lower() in text for n in names), (part.role, part.program, cap["aspects"])
        assert any(g.lower() in text for g in all_synonyms(GENRE_NAMES[spec.genre]))
        assert 1 <= len(re.findall(r"[.!?](\s|$)", cap["caption"])) <= 5
    soft_or_loud = sum(dynamics_word(LOUDNESS_CASES[i % len(LOUDNESS_CASES)]) is not None for i in range(len(arrangements)))
    assert 0.7 * soft_or_loud <= said < soft_or_loud  # mostly said, not always


def test_loudness_follows_the_music_over_a_musical_range():
    """Quiet moods, soft genres, sparse arrangements and intros render softer; every clip stays in
    the range; the spread of one kind of clip is its own."""
    from engine.data.dynamics import LOUDNESS_RANGE_LUFS, loudness_target

    def typical(genre, mood, notes, intro=False):
        return np.median([loudness_target(genre, mood, notes, intro, np.random.default_rng(seed)) for seed in range(200)])

    assert typical("ambient", "calm", 6.0) < typical("folk", "calm", 6.0) < typical("metal", "energetic", 40.0)
    assert typical("metal", "energetic", 40.0) - typical("ambient", "calm", 6.0) > 12
    assert typical("pop", "happy", 18.0, intro=True) < typical("pop", "happy", 18.0) < typical("pop", "happy", 36.0)
    draws = [loudness_target(g, m, n, False, np.random.default_rng(s)) for s, (g, m, n) in enumerate(
        [("ambient", "calm", 1.0), ("metal", "energetic", 80.0), ("pop", "happy", 18.0)] * 100)]
    assert min(draws) >= LOUDNESS_RANGE_LUFS[0] and max(draws) <= LOUDNESS_RANGE_LUFS[1]
    assert np.std([loudness_target("pop", "happy", 18.0, False, np.random.default_rng(s)) for s in range(200)]) > 1.5


def _template_regex(template: str) -> re.Pattern:
    """A train template as a regex: literal text, any text where a field goes."""
    parts = re.split(r"\{[A-Za-z_]+\}", template)
    return re.compile("^" + ".+?".join(re.escape(p) for p in parts) + "$")


def test_test_split_uses_only_held_out_wording(arrangements):
    from engine.data.captions import TEMPLATES

    train_patterns = [_template_regex(t) for section in TEMPLATES.values() for t in section[0]]
    checked = 0
    for arr in arrangements:
        if arr.spec.split != "test":
            continue
        for sentence in re.split(r"(?<=[.])\s+", caption_for(arr, -31.0)["caption"]):  # a whispered clip: its dynamics said too
            assert not any(p.match(sentence) for p in train_patterns), sentence
            checked += 1
    assert checked >= 30
    # and the train captions really are made of train templates (the check can fail)
    train_caption = caption_for(next(a for a in arrangements if a.spec.split == "train"), -18.0)["caption"]
    first = re.split(r"(?<=[.])\s+", train_caption)[0]
    assert any(p.match(first) for p in train_patterns), first


def test_no_test_melody_or_progression_appears_in_train(arrangements):
    index = load_index()
    train_sigs = {m.signature() for m in index if m.split == "train"}
    test_sigs = {m.signature() for m in index if m.split == "test"}
    assert train_sigs and test_sigs and not train_sigs & test_sigs

    by_id = {m.id: m for m in index}
    generated = {"train": set(), "test": set()}
    for arr in arrangements:
        spec = arr.spec
        if spec.melody_source != "generated":
            assert by_id[spec.melody_source].split == spec.split
        else:
            assert (spec.progression in HELD_OUT_PROGRESSIONS) == (spec.split == "test")
            pitches = [n.pitch for n in arr.melody]
            generated[spec.split].add(tuple(np.diff(pitches)))
        if spec.split == "train":  # no window of the played harmony is a held-out progression
            bars = [c for _, _, c in arr.chords]
            for seq in held_out_sequences(spec.key):
                for i in range(len(bars) - len(seq) + 1):
                    assert bars[i:i + len(seq)] != seq, (spec, seq)
    assert not generated["train"] & generated["test"]
    assert {a.spec.split for a in arrangements} == {"train", "test"}


def test_corpus_covers_all_keys_many_programs_and_tempi(arrangements):
    keys = {a.spec.key for a in arrangements}
    programs = {p.program for a in arrangements for p in a.parts if not p.is_drum}
    tempi = [a.spec.tempo for a in arrangements]
    assert len(keys) == 24
    assert len(programs) >= 40
    assert min(tempi) >= 60 and max(tempi) <= 180 and max(tempi) - min(tempi) > 80
    assert len({a.spec.genre for a in arrangements}) == len(GENRES)


def test_mood_steers_velocity_density_register_and_mode():
    from dataclasses import replace

    def stats(mood):
        vel, count, pitch = [], [], []
        for seed in range(6):
            arr = arrange(replace(make_spec("pop", seed=seed, seconds=16.0), mood=mood))
            lead = arr.part("lead").notes
            vel += [n.velocity for n in lead]
            pitch += [n.pitch for n in lead]
            count.append(len(lead))
        return np.mean(vel), np.mean(count), np.mean(pitch)

    sad, energetic = stats("sad"), stats("energetic")
    assert energetic[0] > sad[0] + 15  # louder
    assert energetic[1] > sad[1]  # busier
    assert energetic[2] > sad[2]  # higher register
    minor = {m: np.mean([sample_spec(s, "train", 10).key.mode == "minor" for s in range(400)
                         if sample_spec(s, "train", 10).mood == m]) for m in ("sad", "happy")}
    assert minor["sad"] > 0.6 > 0.3 > minor["happy"]


def test_no_clip_falls_silent(arrangements):
    """Something always sounds: no gap over 0.75 s between notes (fills, intros, breaks)."""
    for arr in arrangements:
        spans = sorted((n.start, n.end) for p in arr.parts for n in p.notes if n.start < arr.spec.seconds)
        covered = 0.0
        for start, end in spans:
            assert start - covered <= 0.75, (arr.spec.genre, arr.spec.seed, covered, start)
            covered = max(covered, end)
        assert arr.spec.seconds - covered <= 0.75
