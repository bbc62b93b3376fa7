"""Retraining chains: one command runs every step a change needs, in order, each resumable.

``python -m engine train all --corpus corpus`` trains every model from nothing (corpus, codec,
MuLan, semantic tokenizer, token caches, prior, the three stages) and judges the set with ``eval
all``; ``python -m engine retrain acoustic --corpus corpus`` rebuilds what the pitch-true codec changes:
the codec (with its note head, the fine STFT term and recorded music), its decoder tuned for what
MuLan reads (the tokens stay), a gliding decoder for the steady partials that one loses, the first
decoder again beside a critic that hears the comb, a fine head
that revoices its partials off the 50 Hz comb, the token caches of its tokens, stages 2 and 3 on
them, and the judges of the result: the codec's, then the
whole set's (the runs folder holds ``codec/``, ``stage2/`` and ``stage3/``, which ``MusicLM.load``
takes in place of the shipped ones). Each step is a command of this CLI run in a process of its
own with its log in ``runs/<chain>/``; a step that finished is skipped when the chain runs again
(its marker holds the wall time it took), and the training steps resume from their run folders,
so an interrupted chain picks up where it stopped.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.recorded import TRAINING_MUSIC, has_recordings
from ..files import atomic_write


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]  # after ``python -m engine``; {corpus} and {runs} are filled in
    output: str = ""  # a step that prints JSON keeps it here (an evaluation)


CORPUS = Step("corpus", ("data", "build", "--out", "{corpus}", "--hours", "11.2", "--seed", "1", "--quiet"))
GLIDE = ("train", "codec", "--corpus", "{corpus}", "--phase-glide", "--glide-rule", "--warmup", "100", "--quiet")
PARTIALS = ("--glide-prominence", "1.5", "--pitch-weight", "4", "--onset-weight", "4", "--tone-share", "0.1", "--lr", "1e-4", "--steps", "6000")
FINE = ("train", "codec", "--corpus", "{corpus}", "--fine-fft", "1920", "--fine-context", "4", "--warmup", "50", "--batch-size", "16",
        "--coarse-share", "0.3", "--recorded-share", "0.3", "--quiet")
CODEC = (  # the note-supervised codec from scratch, with recorded music, then its decoder tuned for what MuLan reads (the tokens stay)
    Step("codec", ("train", "codec", "--preset", "cpu-small", "--corpus", "{corpus}", "--run-dir", "{runs}/codec-scratch", "--pitch-weight", "4",
                   "--note-weight", "4", "--recorded-share", "0.3", "--steps", "16000", "--quiet")),
    Step("codec-decoder", ("train", "codec", "--preset", "cpu-small", "--corpus", "{corpus}", "--init", "{runs}/codec-scratch", "--run-dir",
                           "{runs}/codec-stated", "--steps", "3000", "--warmup", "100", "--lr", "3e-4", "--pitch-weight", "4", "--quiet")),
    # a copy of that decoder that glides by the rule, for the steady partials it loses: magnitudes alone first, then the audio,
    # the rule's threshold lowered, the onsets held (the shipped codec's partials decoder, runs glide-1, -2, -4, -8, -10)
    Step("partials-magnitudes", (*GLIDE, "--init", "{runs}/codec-stated", "--run-dir", "{runs}/partials-1", "--magnitudes-only",
                                 "--tone-share", "0.5", "--lr", "1e-3", "--steps", "2000")),
    Step("partials-audio", (*GLIDE, "--init", "{runs}/partials-1", "--run-dir", "{runs}/partials-2", "--pitch-weight", "4",
                            "--magnitude-weight", "40", "--tone-share", "0.3", "--lr", "3e-4", "--steps", "8000")),
    Step("partials-threshold", (*GLIDE, "--init", "{runs}/partials-2", "--run-dir", "{runs}/partials-3", "--glide-prominence", "1.5",
                                "--pitch-weight", "4", "--magnitude-weight", "40", "--tone-share", "0.2", "--lr", "1e-4", "--steps", "8000")),
    Step("partials-onsets", (*GLIDE, "--init", "{runs}/partials-3", "--run-dir", "{runs}/partials-4", "--magnitude-weight", "10", *PARTIALS)),
    Step("partials", (*GLIDE, "--init", "{runs}/partials-4", "--run-dir", "{runs}/partials", "--magnitude-weight", "20", *PARTIALS)),
    # the stated decoder again, beside a critic that hears the comb in 8,192-point frames (the shipped one: run hcrit1 of 2026-12-07)
    Step("codec-critic", ("train", "codec", "--preset", "cpu-small", "--corpus", "{corpus}", "--init", "{runs}/codec-stated", "--run-dir",
                          "{runs}/codec-critic", "--steps", "2000", "--warmup", "100", "--lr", "3e-4", "--pitch-weight", "4", "--critic-weight", "1",
                          "--critic-after", "200", "--critic-kind", "fine", "--quiet")),
    Step("codec-two-path", ("codec", "combine", "--checkpoint", "{runs}/codec-critic", "--partials", "{runs}/partials", "--glide-above", "700",
                            "--out", "{runs}/codec-two-path", "--force", "--json"), "codec-two-path.json"),
    # a 1,920-point fine head on the gliding decoder, reading the 4 tokens before each (the partials revoiced off the 50 Hz comb),
    # then taught the plain tones more often, with the chorus its partials sound beside (the tokens stay: the shipped head's runs run6 and run8 of 2026-12-07)
    Step("fine-head", (*FINE, "--init", "{runs}/codec-two-path", "--run-dir", "{runs}/fine-head", "--lr", "1e-3", "--steps", "1500",
                       "--tone-share", "0.1")),
    Step("fine-tones", (*FINE, "--init", "{runs}/fine-head", "--run-dir", "{runs}/codec", "--lr", "3e-4", "--steps", "1000", "--tone-share", "0.3",
                        "--fine-chorus-cents", "10")),
)
CODEC_JUDGES = (  # the codec is judged before anything is built on its tokens
    Step("eval-codec", ("eval", "codec", "--corpus", "{corpus}", "--checkpoint", "{runs}/codec", "--clips", "20", "--json"), "codec.json"),
    Step("eval-codec-soundfont", ("eval", "codec", "--corpus", "{corpus}", "--checkpoint", "{runs}/codec", "--clips", "20", "--soundfont", "timgm6mb",
                                  "--json"), "codec-timgm6mb.json"),
    Step("eval-tones", ("eval", "tones", "--checkpoint", "{runs}/codec", "--json"), "tones.json"),
    Step("eval-recordings", ("eval", "recordings", "--checkpoint", "{runs}/codec", "--clips", "12", "--json"), "recordings.json"),
)
MELODY = Step("melody", ("tokenize", "--corpus", "{corpus}", "--only", "melody", "--melody-source", "score", "--quiet"))
STAGE3 = ("train", "stage3", "--preset", "cpu-small", "--corpus", "{corpus}", "--run-dir", "{runs}/stage3", "--steps", "1200", "--quiet")

CHAINS = {
    "acoustic": (
        CORPUS, *CODEC, *CODEC_JUDGES,
        Step("tokens", ("tokenize", "--corpus", "{corpus}", "--only", "tokens", "--codec", "{runs}/codec", "--quiet")),
        MELODY,
        # the new tokens need more than 3,000 steps: held-out 4.06 nats after them, 3.89 after 4,800 more at half the rate
        Step("stage2-start", ("train", "stage2", "--preset", "cpu-small", "--corpus", "{corpus}", "--init", "assets/checkpoints/stage2.safetensors",
                              "--run-dir", "{runs}/stage2-start", "--steps", "3000", "--warmup", "100", "--quiet")),
        Step("stage2", ("train", "stage2", "--preset", "cpu-small", "--corpus", "{corpus}", "--init", "{runs}/stage2-start",
                        "--run-dir", "{runs}/stage2", "--steps", "4800", "--warmup", "50", "--lr", "5e-4", "--quiet")),
        Step("stage3", (*STAGE3, "--init", "assets/checkpoints/stage3.safetensors", "--warmup", "50")),
        # the runs folder is a model set (codec/, stage2/, stage3/ beside the shipped rest): judge it whole
        Step("eval-generation", ("eval", "generation", "--corpus", "{corpus}", "--checkpoint", "{runs}", "--clips", "12", "--seeds", "1", "--json"),
             "generation.json"),
        Step("eval-melody", ("eval", "melody", "--corpus", "{corpus}", "--checkpoint", "{runs}", "--clips", "8", "--json"), "melody.json"),
    ),
    # every model from nothing, in the order each needs the last: `python -m engine train all`
    "all": (
        CORPUS, *CODEC,
        Step("mulan", ("train", "mulan", "--preset", "cpu-small", "--corpus", "{corpus}", "--run-dir", "{runs}/mulan", "--steps", "1000", "--quiet")),
        Step("semantic-encoder", ("train", "semantic", "--preset", "cpu-small", "--corpus", "{corpus}", "--run-dir", "{runs}/semantic-encoder",
                                  "--steps", "2000", "--quiet")),
        Step("semantic", ("train", "semantic", "--preset", "cpu-small", "--corpus", "{corpus}", "--init", "{runs}/semantic-encoder", "--steps", "0",
                          "--codebook", "joint", "--run-dir", "{runs}/semantic", "--quiet")),
        Step("tokens", ("tokenize", "--corpus", "{corpus}", "--only", "tokens", "--mulan", "{runs}/mulan", "--semantic", "{runs}/semantic",
                        "--codec", "{runs}/codec", "--quiet")),
        MELODY,
        Step("prior", ("train", "prior", "--corpus", "{corpus}", "--run-dir", "{runs}/prior", "--quiet")),
        # about as many steps as the shipped stages saw over their fine-tunes (stage1 4,000; stage2 5,754 + 7,800)
        Step("stage1", ("train", "stage1", "--preset", "cpu-small", "--corpus", "{corpus}", "--run-dir", "{runs}/stage1", "--steps", "4000", "--quiet")),
        Step("stage2", ("train", "stage2", "--preset", "cpu-small", "--corpus", "{corpus}", "--run-dir", "{runs}/stage2", "--steps", "12000", "--quiet")),
        Step("stage3", STAGE3),
        Step("report", ("eval", "all", "--corpus", "{corpus}", "--checkpoint", "{runs}", "--out", "{runs}/report", "--json"), "report.json"),
    ),
}


def check_prerequisites(name: str) -> None:
    """A FileNotFoundError before the first step if a later one would miss what it reads: the
    codec's recorded music is needed hours into the chain, after the corpus is built."""
    if any("--recorded-share" in step.args for step in CHAINS[name]) and not has_recordings(TRAINING_MUSIC):
        raise FileNotFoundError(f"the {name} chain trains the codec on recorded music, and none is installed; "
                                "run ./install.sh --training (Debian's game soundtracks, about 750 MB)")


PROGRESS_EVERY_S = 30.0  # how often a running step's wall time so far is saved, so a killed chain loses at most this much of it


def run_chain(name: str, corpus: Path, runs: Path | None = None, log=print) -> dict:
    """Run chain ``name`` step by step; returns each step's wall time (from this or an earlier run).

    A step's wall time sums every attempt at it: a chain killed mid-step (a closed laptop, a session
    that ends) leaves ``<step>.partial.json`` with the time spent so far, and the resumed step adds to it."""
    check_prerequisites(name)
    runs = _folder(name, runs)
    runs.mkdir(parents=True, exist_ok=True)
    times = {}
    for step in CHAINS[name]:
        marker, partial = _records(runs, step)
        if marker.exists():
            times[step.name] = _wall_s(marker)
            log(f"{step.name}: done before ({times[step.name]:.0f} s)")
            continue
        args = [a.format(corpus=corpus, runs=runs) for a in step.args]
        earlier = _wall_s(partial) if partial.exists() else 0.0
        log(f"{step.name}: python -m engine {' '.join(args)}" + (f"  (resumed after {earlier:.0f} s in earlier attempts)" if earlier else ""))
        times[step.name], returncode, stdout = _run_step(args, runs / f"{step.name}.log", bool(step.output), earlier, partial)
        if returncode:
            raise RuntimeError(f"{step.name} failed (exit {returncode}); see {runs / (step.name + '.log')}")
        if step.output:
            atomic_write(runs / step.output, lambda tmp: tmp.write_text(stdout))
        atomic_write(marker, lambda tmp: tmp.write_text(json.dumps({"wall_s": times[step.name], "command": args})))
        partial.unlink(missing_ok=True)
    return {"chain": name, "runs": str(runs), "wall_s": times, "total_s": round(sum(times.values()), 1)}


def chain_status(name: str, runs: Path | None = None) -> dict:
    """Where chain ``name`` stands, read from its folder without running anything: each step done
    (its wall time), begun (the time spent so far and, for a training run, its step of how many) or
    waiting; for a chain that runs for hours in the background."""
    runs = _folder(name, runs)
    steps, spent = [], 0.0
    for step in CHAINS[name]:
        marker, partial = _records(runs, step)
        row = {"step": step.name, "state": "waiting"}
        if marker.exists():
            row |= {"state": "done", "wall_s": _wall_s(marker)}
        elif partial.exists():
            row |= {"state": "begun", "wall_s": _wall_s(partial)}
            row |= _training_progress(step, runs)
        spent += row.get("wall_s", 0.0)
        steps.append(row)
    return {"chain": name, "runs": str(runs), "steps": steps, "done": sum(r["state"] == "done" for r in steps),
            "of": len(steps), "spent_s": round(spent, 1)}


def _folder(name: str, runs: Path | None) -> Path:
    return Path(runs or Path("runs") / name)


def _records(runs: Path, step: Step) -> tuple[Path, Path]:
    """A step's records in the chain's folder: done (its wall time, once it finished) and partial
    (the time its unfinished attempts took)."""
    return runs / f"{step.name}.done.json", runs / f"{step.name}.partial.json"


def _wall_s(record: Path) -> float:
    return json.loads(record.read_text())["wall_s"]


def _training_progress(step: Step, runs: Path) -> dict:
    """A begun training step's last checkpoint: {"at_step": …, "of_steps": …}, or {} for another kind of step."""
    args = list(step.args)
    if "--run-dir" not in args or "--steps" not in args:
        return {}
    state = Path(args[args.index("--run-dir") + 1].format(runs=runs)) / "state.json"
    at = json.loads(state.read_text())["step"] if state.exists() else 0
    return {"at_step": at, "of_steps": int(args[args.index("--steps") + 1])}


def _run_step(args: list[str], log_path: Path, keeps_output: bool, earlier: float, partial: Path) -> tuple[float, int, str]:
    """Run one step's command (its output to its log, or kept if it is the step's result), saving its
    wall time so far (plus ``earlier``) to ``partial`` as it goes; returns the wall time, the exit
    status and the kept output."""
    t0 = time.perf_counter()
    spent = lambda: round(earlier + time.perf_counter() - t0, 1)
    with open(log_path, "a") as log, tempfile.TemporaryFile("w+") as kept:
        proc = subprocess.Popen([sys.executable, "-m", "engine", *args], stdout=kept if keeps_output else log, stderr=log, text=True)
        while True:
            try:
                proc.wait(timeout=PROGRESS_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                atomic_write(partial, lambda tmp: tmp.write_text(json.dumps({"wall_s": spent()})))
        kept.seek(0)
        return spent(), proc.returncode, kept.read()
