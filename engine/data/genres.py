"""Genre, mood and progression declarations for the procedural arranger.

Patterns are one bar of steps (``meter × subdivision`` characters):

* drums: ``X`` accent, ``x`` hit, ``o`` ghost note, ``.`` rest;
* bass: ``R`` root, ``3`` third, ``5`` fifth, ``7`` seventh, ``8`` octave, ``A`` chromatic
  approach to the next chord's root, ``W`` walking-bass choice, ``-`` hold, ``.`` rest;
* comping: ``C`` block chord, ``S`` strummed chord, ``1``–``4`` arpeggio voice, ``-`` hold, ``.`` rest.

Every progression has a global train/test assignment: a held-out progression is never used by a
training clip of any genre, so the test split measures generalization to unseen harmony.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# ----------------------------------------------------------------------------- progressions
# name → (mode, bars). A bar holding two chords is written "ii7,V7".
PROGRESSIONS: dict[str, tuple[str, str]] = {
    # major, training
    "pop_axis": ("major", "I V vi IV"),
    "pop_50s": ("major", "I vi IV V"),
    "pop_sensitive": ("major", "vi IV I V"),
    "rock_classic": ("major", "I IV V IV"),
    "rock_mixo": ("major", "I bVII IV I"),
    "jazz_251": ("major", "ii7 V7 Imaj7 Imaj7"),
    "jazz_turnaround": ("major", "Imaj7 vi7 ii7 V7"),
    "jazz_rhythm": ("major", "Imaj7,vi7 ii7,V7 Imaj7,IVmaj7 ii7,V7"),
    "blues_12": ("major", "I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"),
    "bossa_ipanema": ("major", "Imaj7 Imaj7 II7 II7 ii7 V7 Imaj7 Imaj7"),
    "reggae_one": ("major", "I I IV IV"),
    "funk_vamp": ("major", "I7 I7 IV7 I7"),
    "house_soul": ("major", "IVmaj7 iii7 ii7 Imaj7"),
    "country_train": ("major", "I I IV I V V I I"),
    "folk_simple": ("major", "I IV I V"),
    "folk_return": ("major", "I V IV I"),
    "classical_cadence": ("major", "I IV V7 I"),
    "orch_rise": ("major", "I iii IV V"),
    "waltz_tonic": ("major", "I I V7 V7 V7 V7 I I"),
    "waltz_simple": ("major", "I IV V7 I"),
    "chip_heroic": ("major", "vi IV V I"),
    "lydian_vamp": ("major", "Imaj7 II Imaj7 II"),
    "lofi_maj": ("major", "IVmaj7 Imaj7 IVmaj7 Imaj7"),
    # minor, training
    "minor_aeolian": ("minor", "i bVI bIII bVII"),
    "minor_epic": ("minor", "i bVII bVI bVII"),
    "andalusian": ("minor", "i bVII bVI V"),
    "minor_plagal": ("minor", "i iv i v"),
    "minor_dorian": ("minor", "i7 IV7 i7 IV7"),
    "minor_blues": ("minor", "i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7"),
    "minor_jazz": ("minor", "iiø7 V7 i7 i7"),
    "minor_lament": ("minor", "i v bVI iv"),
    "techno_minor": ("minor", "i i bVI bVII"),
    "minor_harmonic": ("minor", "i iv V7 i"),
    "metal_riff": ("minor", "i bVI bVII i"),
    "metal_phrygian": ("minor", "i bII i bVII"),
    "ambient_minor": ("minor", "i bVImaj7 i bVImaj7"),
    "waltz_minor": ("minor", "i iv V7 i"),
    # held out for the test split (never in training clips)
    "pop_plagal": ("major", "I IV vi V"),
    "canon": ("major", "I V vi iii IV I IV V"),
    "rock_anthem": ("major", "I V bVII IV"),
    "jazz_long251": ("major", "iii7 vi7 ii7 V7"),
    "blues_quick": ("major", "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"),
    "bossa_turn": ("major", "Imaj7 VI7 ii7 V7"),
    "reggae_two": ("major", "I V vi V"),
    "funk_turn": ("major", "I9 I9 IV9 V9"),
    "house_deep": ("major", "ii7 iii7 IVmaj7 V"),
    "country_two": ("major", "I IV I V I IV V I"),
    "folk_three": ("major", "I ii IV I"),
    "waltz_three": ("major", "I vi ii V7"),
    "chip_bounce": ("major", "I iii vi IV"),
    "ambient_float": ("major", "Imaj7 iii7 IVmaj7 iii7"),
    "minor_descend": ("minor", "i bVII bVI v"),
    "minor_jazz_turn": ("minor", "i7 iv7 iiø7 V7"),
    "techno_drone": ("minor", "i i i bVII"),
    "metal_gallop": ("minor", "i bIII bVII bVI"),
    "baroque_minor": ("minor", "i iv bVII bIII bVI iiø7 V7 i"),
    "hiphop_soul": ("minor", "i7 bVImaj7 iv7 V7"),
    "lofi_minor": ("minor", "i7 iv7 bVIImaj7 bIIImaj7"),
}
HELD_OUT_PROGRESSIONS = frozenset(
    {
        "pop_plagal", "canon", "rock_anthem", "jazz_long251", "blues_quick", "bossa_turn",
        "reggae_two", "funk_turn", "house_deep", "country_two", "folk_three", "waltz_three",
        "chip_bounce", "ambient_float", "minor_descend", "minor_jazz_turn", "techno_drone",
        "metal_gallop", "baroque_minor", "hiphop_soul", "lofi_minor",
    }
)


# ----------------------------------------------------------------------------- moods
@dataclass(frozen=True)
class Mood:
    """How a mood steers the arrangement (register, density, mode, velocity)."""

    name: str
    minor_prob: float  # chance the clip is in a minor key
    tempo_bias: float  # -1 = bottom of the genre's range, +1 = top
    density: float  # 0..1: note density of lead and comping, busier grooves
    velocity: int  # base MIDI velocity
    register: int  # semitone shift of lead and comping
    reverb: int  # extra reverb send (CC91)


MOODS: dict[str, Mood] = {m.name: m for m in (
    Mood("calm", 0.3, -0.7, 0.25, 62, -2, 25),
    Mood("happy", 0.05, 0.4, 0.65, 88, 3, 0),
    Mood("sad", 0.9, -0.6, 0.3, 64, -3, 20),
    Mood("tense", 0.85, 0.2, 0.6, 86, 0, 5),
    Mood("energetic", 0.35, 0.8, 0.9, 104, 2, -10),
    Mood("dreamy", 0.25, -0.4, 0.35, 66, 5, 40),
    Mood("dark", 0.95, -0.2, 0.5, 84, -5, 15),
    Mood("playful", 0.1, 0.5, 0.75, 86, 4, 0),
    Mood("epic", 0.7, 0.3, 0.7, 100, 0, 25),
    Mood("romantic", 0.4, -0.5, 0.45, 72, 0, 20),
)}


# ----------------------------------------------------------------------------- genres
@dataclass(frozen=True)
class Groove:
    """A drum kit pattern for one bar (voice → steps) with the fill that ends a phrase."""

    steps: dict[str, str]
    fill: dict[str, str]


@dataclass(frozen=True)
class Genre:
    name: str
    meter: int  # beats per bar
    subdivision: int  # steps per beat
    tempo: tuple[int, int]
    moods: tuple[str, ...]
    progressions: tuple[str, ...]
    bass_programs: tuple[int, ...]
    bass_patterns: tuple[str, ...]
    chord_programs: tuple[int, ...]
    comp_patterns: tuple[str, ...]
    lead_programs: tuple[int, ...]
    grooves: tuple[Groove, ...] = ()
    kits: tuple[int, ...] = (0,)  # GM drum kits (bank 128)
    pad_programs: tuple[int, ...] = ()
    voicing: str = "close"  # see theory.voice_chord
    chord_centre: int = 60
    bass_octave: int = 36  # lowest C of the bass register
    swing: float = 0.0  # delay of off-beat steps, as a fraction of a step
    humanize_ms: float = 8.0
    sevenths: bool = False  # harmonize corpus melodies with seventh chords
    reverb: int = 40
    texture: str = "full"  # caption adjective for the texture
    descriptors: tuple[str, ...] = field(default=())

    @property
    def steps_per_bar(self) -> int:
        return self.meter * self.subdivision


FILL_4x4 = {"snare": "........x.xxXxXX", "tom_hi": "........x.......", "kick": "X..............."}
TOM_FILL = {"tom_hi": "........xx......", "tom_mid": "..........xx....", "tom_lo": "............xxXX", "kick": "X..............."}

GENRES: dict[str, Genre] = {g.name: g for g in (
    Genre(
        "rock", 4, 4, (95, 150), ("energetic", "happy", "tense", "epic", "dark"),
        ("rock_classic", "rock_mixo", "pop_axis", "minor_aeolian", "rock_anthem", "minor_descend"),
        (33, 34), ("R-R-R-R-R-R-R-R-", "R-R-R-R-R-R-5-8-", "R--R--R-R-R-5-A-"),
        (29, 30, 27), ("S-S-S-S-S-S-S-S-", "C--C--C-C--C--C-", "C-------C---C-C-"),
        (29, 30, 27, 81),
        (Groove({"kick": "X.....x.X.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x.", "crash": "X..............."}, TOM_FILL),
         Groove({"kick": "X.x...x.X.x...x.", "snare": "....X.......X..o", "hat": "x.x.x.x.x.x.x.x."}, FILL_4x4)),
        kits=(0, 16, 8), voicing="power", chord_centre=55, bass_octave=28, reverb=30, texture="dense",
        descriptors=("driving", "guitar-heavy", "anthemic"),
    ),
    Genre(
        "pop", 4, 4, (90, 128), ("happy", "energetic", "romantic", "dreamy", "sad", "playful"),
        ("pop_axis", "pop_50s", "pop_sensitive", "minor_aeolian", "minor_epic", "pop_plagal", "canon"),
        (33, 38, 34), ("R.R.R.R.R.R.R.R.", "R---..R-R---..5-", "R-.R-.R-R-.R-.5-"),
        (0, 4, 25, 24), ("C-..C-..C-..C-..", "S-S-.S-SS-S-.S-S", "1.2.3.4.1.2.3.4."),
        (80, 73, 65, 11, 53), 
        (Groove({"kick": "X.......X.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x.", "clap": "....x.......x..."}, FILL_4x4),
         Groove({"kick": "X..x..x.X.......", "snare": "....X.......X...", "hat": "xxxxxxxxxxxxxxxx"}, FILL_4x4)),
        kits=(0, 8, 24), pad_programs=(89, 48, 50), reverb=45, texture="polished",
        descriptors=("catchy", "radio-friendly", "polished"),
    ),
    Genre(
        "jazz swing", 4, 3, (100, 180), ("happy", "calm", "playful", "romantic"),
        ("jazz_251", "jazz_turnaround", "jazz_rhythm", "minor_jazz", "jazz_long251", "minor_jazz_turn"),
        (32,), ("W--W--W--W--", "W--W--W--W-A"),
        (0, 26), ("C.....C..C..", "..C..C.....C", "C..C.......C"),
        (65, 66, 56, 11, 57),
        (Groove({"ride": "x..x.xx..x.x", "pedal": "...x.....x..", "kick": "o.....o.....", "snare": "........o..."},
                {"snare": "x.xx.xx.xX.X", "ride": "x..........."}),),
        kits=(32, 40), voicing="shell", chord_centre=58, swing=0.0, humanize_ms=10, sevenths=True, reverb=35,
        texture="open", descriptors=("swinging", "improvised-sounding", "smoky"),
    ),
    Genre(
        "blues", 4, 3, (60, 120), ("sad", "calm", "energetic", "dark"),
        ("blues_12", "minor_blues", "blues_quick"),
        (33, 32), ("R..3..5..6..", "R..R..5..8..", "R..3..5..A.."),
        (27, 0, 16), ("C..C..C..C..", ".C..C..C..C.", "S.....S..S.."),
        (22, 27, 29, 65),
        (Groove({"kick": "x.....x.....", "snare": "...x.....x..", "hat": "x.xx.xx.xx.x"}, {"snare": "......x.xxXX", "tom_lo": "..........xx"}),
         Groove({"kick": "x..x..x..x..", "snare": "...X.....X..", "ride": "x.xx.xx.xx.x"}, {"snare": "......xxxXXX"})),
        kits=(0, 8), chord_centre=57, humanize_ms=12, sevenths=True, reverb=40, texture="raw",
        descriptors=("soulful", "gritty", "shuffling"),
    ),
    Genre(
        "bossa nova", 4, 4, (110, 140), ("calm", "romantic", "dreamy", "happy"),
        ("bossa_ipanema", "jazz_251", "minor_jazz", "bossa_turn"),
        (32, 33), ("R--5R--5R--5R--5", "R-.5--R.R-.5--5."),
        (24,), ("C..C..C...C..C..", "C..C..C.C..C..C."),
        (73, 66, 65, 0, 24),
        (Groove({"side": "x..x..x...x..x..", "kick": "x..xx..xx..xx..x", "hat": "xxxxxxxxxxxxxxxx"},
                {"side": "x..x..x...x.x.xx"}),),
        kits=(40, 32), chord_centre=57, humanize_ms=9, sevenths=True, reverb=35, texture="intimate",
        descriptors=("laid-back", "syncopated", "breezy"),
    ),
    Genre(
        "reggae", 4, 4, (66, 96), ("calm", "happy", "playful", "romantic"),
        ("reggae_one", "pop_axis", "minor_dorian", "reggae_two"),
        (33,), ("R--.R.5.--..R-8.", "R-.-..5.R-..A..."),
        (27, 16), ("....C.......C...", "..C...C...C...C."),
        (56, 22, 81, 16),
        (Groove({"kick": "........X.......", "side": "........x.......", "hat": "x.x.x.x.x.x.x.xo"}, {"snare": "........x.x.xxxx", "kick": "X..............."}),),
        kits=(0,), chord_centre=62, swing=0.15, reverb=55, texture="roomy", descriptors=("one-drop", "laid-back", "offbeat"),
    ),
    Genre(
        "funk", 4, 4, (92, 118), ("energetic", "happy", "playful"),
        ("funk_vamp", "minor_dorian", "funk_turn"),
        (36, 37, 33), ("R..R.8.R..R.5.7.", "R.RR..8...R.5A.."),
        (27, 4, 7), ("C.C..C.C..C..C.C", ".C.C.C..C.CC..C."),
        (61, 65, 62, 30),
        (Groove({"kick": "X.x...x...X..x..", "snare": "....X..o.o..X..o", "hat": "xxxxxxxxxxxxxxxx"}, FILL_4x4),),
        kits=(0, 8), chord_centre=64, humanize_ms=5, sevenths=True, reverb=20, texture="tight",
        descriptors=("groovy", "tight", "syncopated"),
    ),
    Genre(
        "techno", 4, 4, (122, 138), ("energetic", "tense", "dark", "dreamy"),
        ("techno_minor", "minor_aeolian", "minor_dorian", "techno_drone"),
        (38, 39), ("..R...R...R...R.", "R.RR.R.RR.RR.R.R"),
        (81, 90, 87), ("..C...C...C..C..", "1.2.3.1.2.3.1.2."),
        (81, 80, 84, 99),
        (Groove({"kick": "X...X...X...X...", "open": "..x...x...x...x.", "clap": "....x.......x...", "hat": "x.xxx.xxx.xxx.xx"},
                {"kick": "X...X...X...X...", "snare": "x.x.x.x.xxxxXXXX"}),),
        kits=(24, 25), pad_programs=(95, 91), chord_centre=60, bass_octave=28, humanize_ms=0, reverb=45,
        texture="electronic", descriptors=("hypnotic", "pulsing", "four-on-the-floor"),
    ),
    Genre(
        "house", 4, 4, (118, 128), ("happy", "energetic", "dreamy", "romantic"),
        ("house_soul", "pop_sensitive", "minor_dorian", "house_deep"),
        (38, 33), ("..R-..R-..R-..R-", "R..R..R.R..R..5."),
        (0, 4, 89), ("C..C..C...C..C..", "..C...C...C..C.."),
        (81, 53, 4, 65),
        (Groove({"kick": "X...X...X...X...", "open": "..x...x...x...x.", "clap": "....x.......x...", "shaker": "xxxxxxxxxxxxxxxx"},
                {"kick": "X...X...X...X...", "clap": "....x...x.x.xxxx"}),),
        kits=(24, 25), pad_programs=(89, 88), humanize_ms=0, reverb=45, texture="electronic",
        descriptors=("uplifting", "danceable", "soulful"),
    ),
    Genre(
        "hip hop", 4, 4, (78, 100), ("dark", "calm", "sad", "energetic", "tense"),
        ("minor_lament", "jazz_251", "minor_aeolian", "hiphop_soul"),
        (38, 33, 39), ("R-----..R-.5----", "R---...R..R-----"),
        (4, 0, 11), ("C-------C-------", "C-----..C---..C."),
        (11, 73, 53, 0),
        (Groove({"kick": "X......xX.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.xx"}, {"snare": "....X.......X.XX", "kick": "X......xX.x....."}),
         Groove({"kick": "X..x......x..x..", "snare": "....X.......X...", "hat": "x.xxx.x.x.xxx.x."}, {"snare": "....X.......XxXX"})),
        kits=(25, 0), swing=0.2, humanize_ms=6, sevenths=True, reverb=25, texture="sparse",
        descriptors=("boom-bap", "head-nodding", "sample-like"),
    ),
    Genre(
        "ambient", 4, 4, (60, 80), ("calm", "dreamy", "sad", "dark"),
        ("lydian_vamp", "ambient_minor", "minor_plagal", "ambient_float"),
        (39, 43), ("R---------------", "R-------5-------"),
        (46, 8, 88), ("1...2...3...4...", "1-2-3-4-3-2-1---", "C---------------"),
        (73, 98, 79, 92),
        (), kits=(), pad_programs=(88, 89, 91, 94), chord_centre=62, bass_octave=36, humanize_ms=15, reverb=90,
        texture="spacious", descriptors=("atmospheric", "slowly evolving", "ethereal"),
    ),
    Genre(
        "lo-fi", 4, 4, (70, 90), ("calm", "sad", "dreamy", "romantic"),
        ("jazz_251", "lofi_maj", "minor_jazz", "lofi_minor"),
        (33, 32), ("R---..5-R---....", "R-----R-..5-R---"),
        (4, 0), ("C-------C-------", "C---..C-..C-----"),
        (11, 73, 12, 26),
        (Groove({"kick": "X......xX.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."}, {"snare": "....x.......x.xo"}),),
        kits=(0, 8), swing=0.25, humanize_ms=14, sevenths=True, reverb=45, texture="warm",
        descriptors=("dusty", "mellow", "relaxed"),
    ),
    Genre(
        "string quartet", 4, 4, (60, 120), ("calm", "sad", "romantic", "tense", "happy"),
        ("classical_cadence", "minor_harmonic", "waltz_simple", "baroque_minor", "canon"),
        (42,), ("R-------5-------", "R---R---5---R---", "R-------R---5---"),
        (41, 40), ("C---------------", "1-2-3-2-1-2-3-2-", "C-------C-------"),
        (40,),
        (), kits=(), voicing="open", chord_centre=60, bass_octave=36, humanize_ms=14, reverb=55,
        texture="intimate", descriptors=("elegant", "classical", "expressive"),
    ),
    Genre(
        "orchestral", 4, 4, (64, 120), ("epic", "tense", "sad", "dark", "happy"),
        ("minor_aeolian", "minor_epic", "orch_rise", "andalusian", "metal_gallop", "canon"),
        (43, 58), ("R-------R-------", "R---R---R---R---"),
        (48, 61, 49), ("C---------------", "C-------C-------", "C---C---C---CCCC"),
        (56, 60, 73, 71, 68),
        (Groove({"timpani": "X.......x.......", "crash": "X..............."}, {"timpani": "x.x.x.x.xxxxXXXX"}),
         Groove({"kick": "X.......X.......", "snare": "....X.......X...", "crash": "X..............."}, TOM_FILL)),
        kits=(48,), pad_programs=(52, 49), voicing="open", chord_centre=58, humanize_ms=12, reverb=70,
        texture="lush", descriptors=("cinematic", "sweeping", "grand"),
    ),
    Genre(
        "folk", 4, 4, (70, 120), ("calm", "happy", "sad", "romantic"),
        ("folk_simple", "folk_return", "minor_plagal", "folk_three"),
        (32,), ("R-------5-------", "R---5---R---5---"),
        (25, 24, 105), ("S---S-S-S---S-S-", "1.2.3.4.1.2.3.4.", "S-.SS-S-S-.SS-S-"),
        (110, 73, 22, 105),
        (Groove({"tamb": "....x.......x...", "shaker": "x.x.x.x.x.x.x.x."}, {"tamb": "....x...x.x.xxxx"}),),
        kits=(0,), chord_centre=58, humanize_ms=12, reverb=35, texture="acoustic",
        descriptors=("rustic", "heartfelt", "acoustic"),
    ),
    Genre(
        "country", 4, 4, (80, 140), ("happy", "sad", "energetic", "romantic"),
        ("country_train", "folk_simple", "country_two"),
        (33, 32), ("R---5---R---5---", "R-.-5-.-R-.-A-.-"),
        (25, 24), ("S-.SS-.SS-.SS-.S", "C.C.C.C.C.C.C.C."),
        (110, 105, 27, 22),
        (Groove({"kick": "X.......X.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."}, FILL_4x4),
         Groove({"kick": "x...x...x...x...", "snare": "..o.x.o...o.x.o.", "hat": "x.x.x.x.x.x.x.x."}, FILL_4x4)),
        kits=(0, 40), chord_centre=58, humanize_ms=9, reverb=30, texture="twangy",
        descriptors=("twangy", "down-home", "rolling"),
    ),
    Genre(
        "metal", 4, 4, (100, 180), ("dark", "tense", "energetic", "epic"),
        ("metal_riff", "metal_phrygian", "andalusian", "metal_gallop"),
        (34, 33), ("R.RRR.RRR.RRR.RR", "RRRRRRRRRRRRRRRR"),
        (30,), ("C.CCC.CCC.CCC.CC", "C-------C---C-C-"),
        (30, 29),
        (Groove({"kick": "XxxxXxxxXxxxXxxx", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x.", "crash": "X......."  "........"}, TOM_FILL),
         Groove({"kick": "X.xxX.xxX.xxX.xx", "snare": "....X.......X...", "ride": "x.x.x.x.x.x.x.x."}, TOM_FILL)),
        kits=(16, 0), voicing="power", chord_centre=50, bass_octave=28, humanize_ms=4, reverb=25,
        texture="dense", descriptors=("aggressive", "heavy", "distorted"),
    ),
    Genre(
        "waltz", 3, 4, (84, 180), ("romantic", "happy", "sad", "calm"),
        ("waltz_tonic", "waltz_simple", "waltz_minor", "waltz_three"),
        (32, 43), ("R-----------", "R-------5---"),
        (0, 21, 48), ("....C---C---", "1---2---3---"),
        (40, 71, 21, 73),
        (Groove({"kick": "x...........", "snare": "....o...o..."}, {"snare": "....x.x.xxXX"}),),
        kits=(40,), chord_centre=62, humanize_ms=12, reverb=50, texture="lilting",
        descriptors=("lilting", "graceful", "ballroom"),
    ),
    Genre(
        "chiptune", 4, 4, (120, 170), ("happy", "energetic", "playful", "tense"),
        ("pop_axis", "chip_heroic", "minor_aeolian", "chip_bounce"),
        (80, 81), ("R.8.R.8.R.8.R.8.", "R.R.5.5.8.8.5.5."),
        (80,), ("1234123412341234", "1.3.2.4.1.3.2.4."),
        (80, 81),
        (Groove({"kick": "X...x.X...X.x...", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."}, {"snare": "x.x.x.x.xxxxXXXX"}),),
        kits=(24, 25), chord_centre=64, bass_octave=36, humanize_ms=0, reverb=10, texture="8-bit",
        descriptors=("retro", "video-game", "bleepy"),
    ),
)}

# GM percussion keys for the drum voices used above.
DRUM_KEYS = {
    "kick": 36, "side": 37, "snare": 38, "clap": 39, "hat": 42, "pedal": 44, "open": 46,
    "tom_lo": 45, "tom_mid": 47, "tom_hi": 50, "crash": 49, "ride": 51, "tamb": 54,
    "shaker": 70, "clave": 75,
}
# Pitched percussion written in drum grooves (melodic GM programs).
PITCHED_DRUMS = {"timpani": 47}
# Patches for the melody renditions (hum/whistle training data). Held-out patches are for eval.
RENDITION_PATCHES = {"train": (53, 78, 79), "test": (52, 54, 75)}
