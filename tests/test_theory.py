import pytest

from engine.data.genres import GENRES, HELD_OUT_PROGRESSIONS, PROGRESSIONS
from engine.data.theory import Chord, Key, roman, voice_chord


def test_roman_numerals_in_c():
    c = Key(0, "major")
    assert roman("I", c) == Chord(0, "maj")
    assert roman("ii7", c) == Chord(2, "m7")
    assert roman("V7", c) == Chord(7, "7")
    assert roman("bVII", c) == Chord(10, "maj")
    assert roman("iiø7", Key(9, "minor")) == Chord(11, "m7b5")
    assert roman("V7", c).label == "G7"


@pytest.mark.parametrize("bad", ["", "VIII", "I13b9", "x"])
def test_bad_roman_numeral_is_rejected(bad):
    with pytest.raises(ValueError):
        roman(bad, Key(0, "major"))


def test_every_progression_parses_in_every_key():
    for name, (mode, bars) in PROGRESSIONS.items():
        for tonic in range(12):
            for bar in bars.split():
                for symbol in bar.split(","):
                    roman(symbol, Key(tonic, mode))


def test_voicing_contains_the_chord_and_leads_smoothly():
    key = Key(0, "major")
    prev = None
    for symbol in ["I", "vi", "IV", "V7"]:
        chord = roman(symbol, key)
        v = voice_chord(chord, 60, prev, "close")
        assert {p % 12 for p in v} == set(chord.pitch_classes)
        assert max(v) - min(v) <= 12
        if prev:
            assert sum(min(abs(p - q) for q in prev) for p in v) <= 8
        prev = v


def test_genre_declarations_are_consistent():
    assert len(GENRES) >= 16
    programs = set()
    for g in GENRES.values():
        for pattern in g.bass_patterns + g.comp_patterns:
            assert len(pattern) == g.steps_per_bar, (g.name, pattern)
        for groove in g.grooves:
            for steps in list(groove.steps.values()) + list(groove.fill.values()):
                assert len(steps) == g.steps_per_bar, (g.name, steps)
        assert all(p in PROGRESSIONS for p in g.progressions)
        train = [p for p in g.progressions if p not in HELD_OUT_PROGRESSIONS]
        test = [p for p in g.progressions if p in HELD_OUT_PROGRESSIONS]
        assert train and test, f"{g.name} needs both train and held-out progressions"
        assert 60 <= g.tempo[0] <= g.tempo[1] <= 180
        programs |= set(g.bass_programs + g.chord_programs + g.lead_programs + g.pad_programs)
    assert len(programs) >= 40
