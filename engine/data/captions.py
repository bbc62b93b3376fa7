"""MusicCaps-style captions: 1–4 sentences of free text plus an aspect list.

Wording is split like the music: training clips draw from the train templates and synonyms,
test clips only from the held-out ones, so text-side metrics (MuLan recall, paraphrase
robustness) measure generalization to unseen phrasing rather than memorized sentences.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..prompts import DYNAMICS_WORDS, TEMPO_WORDS, tempo_bucket

# (train synonyms, held-out synonyms)
Synonyms = tuple[tuple[str, ...], tuple[str, ...]]

INSTRUMENT_NAMES: dict[int, Synonyms] = {
    0: (("piano", "acoustic piano"), ("grand piano",)),
    4: (("electric piano", "Rhodes"), ("Rhodes-style keys",)),
    7: (("clavinet", "clav"), ("funky clavinet",)),
    8: (("celesta",), ("celeste",)),
    11: (("vibraphone", "vibes"), ("mallet vibraphone",)),
    12: (("marimba",), ("wooden marimba",)),
    16: (("organ", "drawbar organ"), ("Hammond-style organ",)),
    21: (("accordion",), ("squeezebox",)),
    22: (("harmonica", "blues harp"), ("mouth harp",)),
    24: (("nylon-string guitar", "classical guitar"), ("Spanish guitar",)),
    25: (("acoustic guitar", "steel-string guitar"), ("strummed acoustic",)),
    26: (("jazz guitar", "hollow-body guitar"), ("archtop guitar",)),
    27: (("clean electric guitar", "clean guitar"), ("clean-toned electric",)),
    29: (("overdriven guitar", "crunchy guitar"), ("driven electric guitar",)),
    30: (("distorted guitar", "heavy guitar"), ("high-gain guitar",)),
    32: (("upright bass", "acoustic bass"), ("double bass",)),
    33: (("electric bass", "bass guitar"), ("fingered bass",)),
    34: (("picked bass", "pick bass"), ("plectrum bass",)),
    36: (("slap bass",), ("popping bass",)),
    37: (("slap bass",), ("thumb-slapped bass",)),
    38: (("synth bass",), ("synthesizer bass",)),
    39: (("deep synth bass", "analog synth bass"), ("sub bass",)),
    40: (("violin",), ("solo fiddle-like violin",)),
    41: (("viola",), ("alto viola",)),
    42: (("cello",), ("violoncello",)),
    43: (("contrabass", "bowed double bass"), ("orchestral bass",)),
    46: (("harp",), ("concert harp",)),
    47: (("timpani",), ("kettle drums",)),
    48: (("string ensemble", "strings"), ("string section",)),
    49: (("slow strings", "soft strings"), ("string pads",)),
    50: (("synth strings",), ("synthesized strings",)),
    52: (("choir", "choir aahs"), ("vocal choir",)),
    53: (("vocal oohs", "wordless vocals"), ("humming voices",)),
    54: (("synth voice",), ("synthetic vocals",)),
    56: (("trumpet",), ("solo trumpet",)),
    57: (("trombone",), ("slide trombone",)),
    58: (("tuba",), ("low brass tuba",)),
    60: (("French horn", "horn"), ("orchestral horn",)),
    61: (("brass section", "horns"), ("horn section",)),
    62: (("synth brass",), ("synthesized brass",)),
    65: (("alto saxophone", "alto sax"), ("alto",)),
    66: (("tenor saxophone", "tenor sax"), ("tenor",)),
    68: (("oboe",), ("reedy oboe",)),
    71: (("clarinet",), ("woody clarinet",)),
    73: (("flute",), ("silvery flute",)),
    75: (("pan flute",), ("panpipes",)),
    78: (("whistle",), ("whistling",)),
    79: (("ocarina",), ("clay ocarina",)),
    80: (("square lead", "square-wave synth"), ("chip lead",)),
    81: (("sawtooth lead", "saw synth"), ("saw-wave lead",)),
    84: (("charang synth lead",), ("buzzy synth lead",)),
    87: (("bass and lead synth",), ("layered synth",)),
    88: (("new age pad", "warm synth pad"), ("soft pad",)),
    89: (("warm pad", "synth pad"), ("lush pad",)),
    90: (("polysynth",), ("polyphonic synth",)),
    91: (("choir pad", "vocal pad"), ("airy vocal pad",)),
    92: (("bowed pad",), ("glassy bowed pad",)),
    94: (("halo pad",), ("shimmering pad",)),
    95: (("sweep pad",), ("filter-sweep pad",)),
    98: (("crystal synth", "glassy bells"), ("crystalline bells",)),
    99: (("atmosphere synth",), ("atmospheric synth",)),
    105: (("banjo",), ("five-string banjo",)),
    110: (("fiddle",), ("country fiddle",)),
}
KIT_NAMES: dict[int, Synonyms] = {
    0: (("drums", "drum kit"), ("live drums",)),
    8: (("room drums", "roomy drum kit"), ("ambient drum kit",)),
    16: (("powerful drums", "big drum kit"), ("thunderous drums",)),
    24: (("drum machine", "electronic drums"), ("programmed drums",)),
    25: (("808 drum machine", "808 drums"), ("TR-808 beat",)),
    32: (("jazz drums", "jazz kit"), ("swinging drum kit",)),
    40: (("brushed drums", "brushes"), ("drums played with brushes",)),
    48: (("orchestral percussion",), ("concert percussion",)),
}
GENRE_NAMES: dict[str, Synonyms] = {
    "rock": (("rock", "rock and roll"), ("guitar rock",)),
    "pop": (("pop", "pop music"), ("mainstream pop",)),
    "jazz swing": (("jazz swing", "swing jazz", "jazz"), ("big-band-style swing",)),
    "blues": (("blues", "shuffle blues"), ("twelve-bar blues",)),
    "bossa nova": (("bossa nova", "bossa"), ("Brazilian bossa nova",)),
    "reggae": (("reggae", "roots reggae"), ("Jamaican reggae",)),
    "funk": (("funk", "funky groove"), ("seventies funk",)),
    "techno": (("techno", "minimal techno"), ("warehouse techno",)),
    "house": (("house", "deep house"), ("club house",)),
    "hip hop": (("hip hop", "hip-hop"), ("rap beat",)),
    "ambient": (("ambient", "ambient music"), ("drone ambient",)),
    "lo-fi": (("lo-fi", "lo-fi hip hop"), ("chillhop",)),
    "string quartet": (("string quartet", "chamber strings"), ("classical quartet",)),
    "orchestral": (("orchestral", "cinematic orchestral"), ("film score",)),
    "folk": (("folk", "acoustic folk"), ("traditional folk",)),
    "country": (("country", "country and western"), ("Nashville country",)),
    "metal": (("metal", "heavy metal"), ("thrash metal",)),
    "waltz": (("waltz", "waltz in three"), ("Viennese-style waltz",)),
    "chiptune": (("chiptune", "8-bit music"), ("retro game music",)),
}
MOOD_NAMES: dict[str, Synonyms] = {
    "calm": (("calm", "peaceful", "relaxed"), ("tranquil",)),
    "happy": (("happy", "cheerful", "joyful"), ("upbeat",)),
    "sad": (("sad", "melancholic", "sorrowful"), ("heartbroken",)),
    "tense": (("tense", "suspenseful", "anxious"), ("nervous",)),
    "energetic": (("energetic", "lively", "high-energy"), ("vigorous",)),
    "dreamy": (("dreamy", "hazy", "floating"), ("ethereal",)),
    "dark": (("dark", "ominous", "brooding"), ("sinister",)),
    "playful": (("playful", "bouncy", "whimsical"), ("cheeky",)),
    "epic": (("epic", "heroic", "majestic"), ("triumphant",)),
    "romantic": (("romantic", "tender", "loving"), ("sentimental",)),
}
DYNAMICS_NAMES: dict[str, Synonyms] = DYNAMICS_WORDS  # keys: prompts.DYNAMICS_RANGES
PIECE_WORDS: Synonyms = (("piece", "track", "song", "tune"), ("composition", "number"))
USES: Synonyms = (
    ("a film scene", "a video game", "a coffee shop", "a late-night drive", "a workout", "studying"),
    ("a documentary", "a dinner party"),
)

# Sentence templates. Fields: {mood} {genre} {piece} {descriptor} {lead} {chords} {bass} {drums}
# {pad} {tempo_word} {bpm} {key} {texture} {use} {dynamics}. A template is used only when its fields exist.
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "opener": (
        (
            "This is a {mood} {genre} {piece}.",
            "A {mood} {genre} {piece} with a {descriptor} feel.",
            "The {piece} is {descriptor} {genre} with a {mood} mood.",
            "{Mood} {genre} music.",
            "Here is a {descriptor}, {mood} {genre} {piece}.",
            "This {genre} {piece} sounds {mood} and {descriptor}.",
            "An instrumental {genre} {piece} that feels {mood}.",
            "A {descriptor} {genre} instrumental in a {mood} vein.",
            "This recording is a {mood} {genre} {piece}.",
            "You are listening to {descriptor} {genre} with a {mood} character.",
        ),
        (
            "What we hear is {genre}, {mood} in tone and {descriptor} in style.",
            "A {piece} of {genre} whose atmosphere is {mood}.",
            "Instrumental {genre}; the overall feeling is {mood}.",
        ),
    ),
    "instruments": (
        (
            "The {lead} plays the melody over {chords} chords and a {bass} line.",
            "A {lead} carries the main melody while the {chords} provides the harmony.",
            "The melody is played by a {lead}, accompanied by {chords} and {bass}.",
            "{Chords} chords and a {bass} support a {lead} melody.",
            "The {bass} holds down the low end as the {lead} sings the tune.",
            "The {drums} keep time under {chords}, {bass} and a {lead} lead.",
            "There is a {lead} melody, {chords} comping, a {bass} and {drums}.",
            "Over steady {drums}, a {lead} plays the lead and the {chords} fills in the harmony.",
            "The arrangement features {lead}, {chords} and {bass}, with {pad} in the background.",
            "Soft {pad} sits behind a {lead} melody, {chords} and {bass}.",
        ),
        (
            "Instrumentation: {lead} on top, {chords} in the middle, {bass} underneath.",
            "You can hear {chords}, {bass} and a {lead} taking the tune.",
            "A {lead} leads the way, backed by {chords} and {bass} with {drums}.",
        ),
    ),
    "tempo": (
        (
            "The tempo is {tempo_word} at {bpm} bpm and the piece is in {key}.",
            "It moves at a {tempo_word} {bpm} bpm in the key of {key}.",
            "The {piece} is in {key} at around {bpm} beats per minute.",
            "A {tempo_word} tempo of {bpm} bpm; key of {key}.",
            "The {piece} has a {tempo_word} pace.",
            "The tempo is {tempo_word}.",
            "It is played in {key}.",
            "{Tempo_word} tempo, {bpm} bpm.",
        ),
        (
            "Played at {bpm} BPM, a {tempo_word} pulse, in {key}.",
            "The pulse sits at {bpm} bpm; tonal center {key}.",
        ),
    ),
    "dynamics": (
        (
            "It is played {dynamics}.",
            "The dynamics are {dynamics}.",
            "The volume is {dynamics} throughout.",
            "A {dynamics} performance.",
            "{Dynamics} from start to finish.",
        ),
        (
            "Its level stays {dynamics}.",
            "Performed {dynamics}.",
        ),
    ),
    "texture": (
        (
            "The texture is {texture}.",
            "The overall texture is {texture} and it would suit {use}.",
            "This {piece} could be used for {use}.",
            "The production feels {texture}.",
            "It would fit well in {use}.",
            "The mix is {texture}, suitable for {use}.",
        ),
        (
            "A good match for {use}, with a {texture} sound.",
            "Imagine it playing during {use}.",
        ),
    ),
}


DYNAMICS_SAID = 0.85  # how often a clearly soft or loud clip's caption says so


def pick(rng: np.random.Generator, synonyms: Synonyms, split: str) -> str:
    options = synonyms[1] if split == "test" else synonyms[0]
    return options[rng.integers(len(options))]


def all_synonyms(synonyms: Synonyms) -> tuple[str, ...]:
    return synonyms[0] + synonyms[1]


@dataclass(frozen=True)
class Caption:
    text: str
    aspects: tuple[str, ...]


def _fill(template: str, fields: dict[str, str]) -> str | None:
    """Fill a template, or None when it names a field this clip lacks (e.g. {drums})."""
    capitalized = {k.capitalize(): v[:1].upper() + v[1:] for k, v in fields.items()}
    try:
        return template.format(**fields, **capitalized)
    except KeyError:
        return None


def write_caption(
    rng: np.random.Generator,
    split: str,
    genre: str,
    mood: str,
    descriptor: str,
    texture: str,
    bpm: int,
    key_name: str,
    instruments: dict[str, tuple[int, bool]],  # role → (program, is_drum_kit)
    dynamics: str | None = None,  # a key of DYNAMICS_NAMES: the clip is clearly soft or loud
) -> Caption:
    """Write one caption: an opener, then 0–3 of instrumentation / tempo & key / texture, and
    (mostly) the dynamics of a clearly soft or loud clip."""
    names = {
        role: pick(rng, (KIT_NAMES if is_kit else INSTRUMENT_NAMES)[program], split)
        for role, (program, is_kit) in instruments.items()
    }
    fields = {
        "genre": pick(rng, GENRE_NAMES[genre], split),
        "mood": pick(rng, MOOD_NAMES[mood], split),
        "piece": pick(rng, PIECE_WORDS, split),
        "descriptor": descriptor,
        "texture": texture,
        "use": pick(rng, USES, split),
        "tempo_word": pick(rng, TEMPO_WORDS[tempo_bucket(bpm)], split),
        "bpm": str(bpm),
        "key": key_name,
        **names,
    }
    sentences = [_choose(rng, "opener", split, fields)]
    extra = ["instruments", "tempo", "texture"]
    k = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.3, 0.35, 0.25]))
    for section in sorted(rng.choice(extra, size=k, replace=False), key=extra.index):
        sentence = _choose(rng, section, split, fields)
        if sentence:
            sentences.append(sentence)
    said = None
    if dynamics and rng.random() < DYNAMICS_SAID:
        said = pick(rng, DYNAMICS_NAMES[dynamics], split)
        sentences.append(_choose(rng, "dynamics", split, {**fields, "dynamics": said}))
    aspects = (
        fields["genre"],
        fields["mood"],
        f"{fields['tempo_word']} tempo",
        f"{bpm} bpm",
        key_name,
        *names.values(),
        f"{texture} texture",
        descriptor,
        *((said,) if said else ()),
    )
    return Caption(_articles(" ".join(sentences)), tuple(dict.fromkeys(aspects)))


_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU8](?!ne\b|ne-))")


def _articles(text: str) -> str:
    """'a organ' → 'an organ', 'a 808' → 'an 808' (templates cannot know the word that follows)."""
    return _ARTICLE.sub(lambda m: m.group(1) + "n ", text)


def _choose(rng: np.random.Generator, section: str, split: str, fields: dict[str, str]) -> str | None:
    templates = TEMPLATES[section][1 if split == "test" else 0]
    for i in rng.permutation(len(templates)):
        sentence = _fill(templates[i], fields)
        if sentence:
            return sentence
    return None
