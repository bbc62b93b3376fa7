"""Live mode: an endless stream steered while it plays (engine.generate.live, engine.evaluate.live)."""
import json
import subprocess
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch

from engine import MusicLM
from engine.evaluate.live import Change, parse_script, render_timeline, run_script
from engine.generate import live as live_module
from engine.generate.live import Direction, LiveStream, Playback, SkipClock, replay
from engine.generate.settings import GenerationSettings
from engine.nn.codec import HOP, CodecStreamer
from tests.conftest import ROOT
from tests.tiny import tiny_pipeline


class PromptTokens:
    """MuLan as far as live conditioning uses it: each prompt its own direction in the space,
    tokens read off the embedding, so a blend lands between its prompts."""
    rvq = None

    def embed_text(self, prompts):
        rows = [torch.randn(16, generator=torch.Generator().manual_seed(zlib.crc32(p.encode()))) for p in prompts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)

    def tokens(self, embedding):
        return (embedding[:, :12].abs() * 5000).long() % 1024


@pytest.fixture(scope="module")
def live_model():
    tiny = tiny_pipeline()
    return MusicLM(PromptTokens(), tiny.codec, *tiny.stages.values())


def play(stream: LiveStream, steer_at: dict[float, Direction], stop_at: float) -> np.ndarray:
    """Drain a stream, steering when its output passes each time; the audio."""
    pieces, todo = [], sorted(steer_at.items())
    for chunk in stream:
        pieces.append(chunk.audio)
        while todo and stream.seconds >= todo[0][0]:
            stream.steer(todo.pop(0)[1])
        if stream.seconds >= stop_at:
            stream.stop()
    return np.concatenate(pieces)


def test_a_change_takes_over_at_the_next_chunk_without_a_gap(live_model):
    stream = LiveStream(live_model, Direction.of("calm piano"), GenerationSettings(seed=1), buffer=None)
    audio = play(stream, {1.0: Direction.of("loud metal")}, stop_at=2.5)
    first, second = stream.timeline
    assert (first.frame, first.handover) == (0, False)
    assert second.handover and second.direction.prompt == "loud metal"
    assert 50 <= second.frame <= 50 + 10 + 10  # at most a chunk past the moment it was asked (1.0 s = frame 50, plus the chunk in hand)
    assert len(audio) == stream.samples == stream.frames * HOP  # every frame decoded, the last held-back samples flushed
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_a_run_renders_again_sample_for_sample_from_its_timeline(live_model, monkeypatch):
    monkeypatch.setattr(live_module, "SEGMENT_SECONDS", 1.2)  # segments also end by themselves in the run
    stream = LiveStream(live_model, Direction.of("calm piano"), GenerationSettings(seed=3), buffer=None)
    changes = {0.6: Direction.of("loud metal", bpm=140), 1.8: Direction((("calm piano", 0.7), ("loud metal", 0.3))).checked(),
               2.2: Direction.of("calm piano", guidance=1.0)}
    audio = play(stream, changes, stop_at=4.0)
    record = json.loads(json.dumps(stream.timeline_record()))  # through a file's worth of JSON
    assert len(record["segments"]) >= 5 and not all(row["handover"] for row in record["segments"][1:])
    again = np.concatenate([chunk.audio for chunk in replay(live_model, record)])
    assert np.array_equal(audio, again)
    record["segments"][1]["frame"] = 0
    with pytest.raises(ValueError, match="start at frame 0, in order"):
        list(replay(live_model, record))



def test_loud_and_quiet_words_set_the_live_level_from_the_change_on(live_model):
    import torchaudio.functional as AF

    def lufs(audio):
        return float(AF.loudness(torch.from_numpy(audio)[None], 24_000))

    heard = {}
    for on in (True, False):  # the same draws: the level stage touches the audio, never the tokens
        stream = LiveStream(live_model, Direction.of("whisper-quiet piano"), GenerationSettings(seed=2, level_stage=on), buffer=None)
        audio = play(stream, {1.5: Direction((("thunderous drums", 1.0), ("calm strings", 1.0))).checked()}, stop_at=4.5)
        heard[on] = lufs(audio[3 * 24_000:4 * 24_000]) - lufs(audio[:24_000])  # the loud part over the quiet one
    assert heard[True] > heard[False] + 6

def test_a_segment_nobody_changes_continues_under_the_same_direction(live_model, monkeypatch):
    monkeypatch.setattr(live_module, "SEGMENT_SECONDS", 0.8)
    stream = LiveStream(live_model, Direction.of("calm piano"), GenerationSettings(seed=2), buffer=None)
    stream.steer(Direction.of("calm piano"))  # the direction already playing: nothing to change
    play(stream, {}, stop_at=2.0)
    assert [s.frame for s in stream.timeline] == [0, 40, 80]
    assert not any(s.handover for s in stream.timeline) and {s.direction.prompt for s in stream.timeline} == {"calm piano"}


class Manual(SkipClock):
    """A clock that moves only when the stream waits: generation takes no time at all."""
    def now(self):
        return self.skipped


def test_the_player_model_counts_underruns():
    clock = Manual()
    player = Playback(clock, prebuffer=1.0)
    player.add(0.5)
    assert player.started_at is None and player.position() == 0.0
    player.add(0.6)  # prebuffer reached: playback starts now
    clock.sleep(0.8)
    assert player.position() == pytest.approx(0.8) and player.lead() == pytest.approx(0.3)
    clock.sleep(0.7)  # 0.4 s past the end of what was made
    player.add(0.2)
    assert player.underruns == [(1.1, pytest.approx(0.4))]
    assert player.position() == pytest.approx(1.1)


def test_a_paced_stream_never_runs_more_than_its_buffer_ahead(live_model):
    clock = Manual()
    stream = LiveStream(live_model, Direction.of("calm piano"), GenerationSettings(seed=1), buffer=0.5, clock=clock)
    leads = []
    for _ in stream:
        leads.append(stream.playback.lead())
        if stream.seconds >= 3.0:
            stream.stop()
    assert max(leads[5:-1]) <= 0.5 + live_module.CHUNK_SECONDS + 1e-6
    assert clock.skipped >= 2.4 and stream.playback.underruns == []  # it waited for its listener


def test_the_codec_stream_keeps_only_its_receptive_field(live_model):
    codec = live_model.codec
    codes = torch.randint(0, 1024, (codec.cfg.levels, 400))
    streamer = CodecStreamer(codec)
    pieces = [streamer.push(codes[:, i:i + 10]) for i in range(0, 400, 10)] + [streamer.finish()]
    assert streamer.codes.shape[1] <= max(codec.decoder.receptive_field, 10)
    whole = CodecStreamer(codec).push(codes, final=True)
    assert torch.allclose(torch.cat(pieces), whole, atol=1e-5)


@pytest.mark.parametrize("direction, message", [
    (Direction(()), "at least one prompt"),
    (Direction((("calm piano", -1.0),)), "weight must be a number ≥ 0"),
    (Direction((("calm piano", 0.0),)), "every blend weight is 0"),
    (Direction((("   ", 1.0),)), "the prompt is empty"),
    (Direction((("calm piano", 1.0),), bpm=400), "between 40 and 240 bpm"),
    (Direction((("calm piano", 1.0),), guidance=-2), r"guidance must be in \[0, 20\]"),
])
def test_bad_directions_get_one_clear_message_and_the_stream_goes_on(live_model, direction, message):
    stream = LiveStream(live_model, Direction.of("calm piano"), buffer=None)
    with pytest.raises(ValueError, match=message):
        stream.steer(direction)
    assert stream._pending[0].prompt == "calm piano"


@pytest.mark.parametrize("text, message", [
    ("[]", "a list of changes"),
    ("{", "not valid JSON"),
    ('[{"at": 5, "prompt": "calm piano"}]', "the first change of a live script is at 0"),
    ('[{"at": 0, "prompt": "calm piano"}, {"at": "soon", "prompt": "metal"}]', 'change 2: "at" must be a number'),
    ('[{"at": 0, "blend": [["calm piano"]]}]', "change 1: a blend is a list"),
])
def test_bad_scripts_get_one_clear_message(text, message):
    with pytest.raises(ValueError, match=message):
        parse_script(text)


def test_a_scripted_run_reports_what_a_listener_gets_and_renders_again(live_model, tmp_path):
    script = parse_script(json.dumps([{"at": 0, "prompt": "calm piano"}, {"at": 1.0, "prompt": "loud metal"},
                                      {"at": 2.0, "blend": [["calm piano", 1], ["loud metal", 1]]}]))
    assert script[1] == Change(1.0, Direction.of("loud metal"))
    report, timeline = run_script(live_model, script, minutes=3.5 / 60, out=tmp_path / "live.wav", buffer=0.5, skip_waits=True)
    assert report["seconds"] >= 3.5 and report["underruns"] == 0
    assert [c["prompt"] for c in report["changes"]] == ["loud metal", "calm piano"]
    assert all(0 <= c["switch_s"] <= 0.5 + 0.5 for c in report["changes"])  # the buffer, a chunk and a step of the script's check
    again = render_timeline(live_model, timeline, tmp_path / "again.wav")
    assert again["sha256"] == report["sha256"]
    assert np.array_equal(sf.read(tmp_path / "live.wav", dtype="float32")[0], sf.read(tmp_path / "again.wav", dtype="float32")[0])


@pytest.mark.parametrize("args, message", [
    ([], "give a starting prompt or --script"),
    (["calm piano", "--out", "x.mp3"], "live mode writes WAV"),
    (["--script", "missing.json"], "no such file"),
    (["calm piano", "--minutes", "soon"], "not a number"),
])
def test_live_cli_mistakes_are_one_line(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "live", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
