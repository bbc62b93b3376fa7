"""``python -m engine …``: the command-line face of the engine.

Bad input exits with code 2 and one clear line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, load_audio, save_audio
from .checkpoints import CHECKPOINT_DIR, MODEL_NAMES, export_checkpoint, model_status
from .client import IDLE_MINUTES, IN_PROCESS_FLAG, SERVER_SWITCH, process_age_s, stop_server
from .files import atomic_write, save_json, save_tensors
from .evaluate import EVALUATORS
from .generate.live import DEFAULT_BUFFER, check_buffer
from .generate.musiclm import ONE_SHOT_INLINE_SECONDS, MusicLM
from .generate.requests import ContinueRequest, HumRequest, InpaintRequest, StoryRequest, StyleRequest, TextRequest, parse_story
from .generate.settings import GenerationSettings, available_devices
from .melody import MELODY_SOURCES
from .nn.codec import HOP, CodecConfig, load_codec, with_partials, with_stated
from .prompts import clean_prompt
from .serve import Declined, ServerError, serve
from .train.pipeline import CHAINS, chain_status, run_chain

# The corpus, training, evaluation and benchmark code is imported by the commands that use it: a
# `generate` (what users run most, and wait on) imports none of it, 0.07 s sooner to its first sound.


class UsageError(Exception):
    """A problem with what the user asked for; reported as one line, exit code 2."""
    exit_code = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line that names it (and where help is), not the usage first."""
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    value = _positive_float(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text}")
    return int(value)


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0 or value == float("inf"):  # NaN fails the first comparison
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _temperature(text: str) -> float:
    """A sampling temperature: 0 is allowed (greedy), as ``GenerationSettings`` allows it."""
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (greedy) or a positive number, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _data(args: argparse.Namespace) -> dict:
    from .data.build import BuildConfig, build
    from .data.melodies import build_index
    from .data.render import SynthUnavailable
    if args.data_command == "build":
        try:
            return build(BuildConfig(Path(args.out), args.hours, args.seed, args.clip_seconds, args.workers), progress=not args.quiet)
        except SynthUnavailable as exc:
            raise UsageError(str(exc)) from None
    if args.data_command == "melodies":
        return build_index(workers=args.workers)
    raise UsageError(f"unknown data command {args.data_command!r}")


AUDIO_LOSS_OPTIONS = ("descriptor_weight", "pitch_weight", "phase_weight", "spectrum_weight", "magnitude_weight", "onset_weight", "critic_weight")
# the train codec weights of terms on the audio, which a fine-tune of magnitudes alone has none of


def _audio_losses_given(args: argparse.Namespace) -> list[str]:
    return [name for name in AUDIO_LOSS_OPTIONS if getattr(args, name) is not None]

CODEC_FROM_SCRATCH = {  # train codec options that shape what the tokens carry, so they need a codec trained from scratch
    "note_weight": "the first levels must learn the notes",
    "recorded_share": "the encoder must learn from the recordings",
    "recorded": "the encoder must learn from the recordings",
    "phase_vector": "the encoder must learn to say each partial's phase",
    "phase_beyond_levels": "it decides which levels carry the phase",
}


def _train(args: argparse.Namespace) -> dict:
    from .train.trainers import TRAINERS
    if args.stage == "all":  # the whole chain, corpus first (engine/train/pipeline.py)
        return _chain("all", args.corpus, args.run_dir, args.status)
    if args.stage not in TRAINERS:
        raise UsageError(f"training {args.stage!r} is not available yet; available: {', '.join(TRAINERS)}")
    corpus = Path(args.corpus)
    if not (corpus / "train.jsonl").exists():
        raise UsageError(f"no corpus at {corpus}: build one with python -m engine data build --out {corpus} --hours 4")
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("max_minutes", args.max_minutes), ("init", args.init), ("lr", args.lr), ("warmup", args.warmup)) if v is not None}
    if args.init and not Path(args.init).exists():
        raise UsageError(f"--init {args.init}: no such checkpoint")
    if args.descriptor_weight is not None:
        if args.stage != "codec" or not args.init:
            raise UsageError("--descriptor-weight applies to a codec fine-tune only (train codec --init CHECKPOINT)")
        overrides["descriptor_weight"] = args.descriptor_weight
    if args.pitch_weight is not None:
        if args.stage != "codec":
            raise UsageError("--pitch-weight applies to the codec only")
        overrides["pitch_weight"] = args.pitch_weight
    for option, why in CODEC_FROM_SCRATCH.items():
        if getattr(args, option) is not None:
            fine_head_hears_it = option.startswith("recorded") and args.fine_fft is not None  # trained alone, it hears recorded music as the encoder did
            if not fine_head_hears_it and (args.stage != "codec" or args.init):
                raise UsageError(f"--{option.replace('_', '-')} applies to a codec trained from scratch (train codec without --init): {why}")
            overrides[option] = tuple(getattr(args, option)) if option == "recorded" else getattr(args, option)
    if args.phase_beyond_levels is not None and not args.spectrum_weight:
        raise UsageError("--phase-beyond-levels says which decodes the spectrum term's phase counts for; give --spectrum-weight too")
    if args.recorded is not None and not args.recorded_share:
        raise UsageError("--recorded names the music that --recorded-share mixes in; give --recorded-share too")
    for option in ("critic_after", "critic_kind"):
        if getattr(args, option) is not None and not args.critic_weight:
            raise UsageError(f"--{option.replace('_', '-')} says how the decoder hears the critic; give --critic-weight too")
    for option in ("tone_share", "spectrum_weight", "magnitude_weight", "onset_weight", "critic_weight", "critic_after", "critic_kind"):
        if getattr(args, option) is not None:
            if args.stage != "codec":
                raise UsageError(f"--{option.replace('_', '-')} applies to the codec only")
            overrides[option] = getattr(args, option)
    if args.coarse_share is not None:
        if args.stage != "codec" or not args.init:
            raise UsageError("--coarse-share applies to a codec fine-tune (train codec --init CHECKPOINT): its decoder learns the coarse levels too")
        overrides["coarse_share"] = args.coarse_share
    if args.magnitudes_only:
        if args.stage != "codec" or not args.init:
            raise UsageError("--magnitudes-only fine-tunes a trained codec's decoder: train codec --init CHECKPOINT --magnitudes-only")
        other = _audio_losses_given(args)
        if other:
            raise UsageError(f"--magnitudes-only has no loss on the audio; drop --{other[0].replace('_', '-')}")
        overrides["magnitudes_only"] = True
    if args.fine_fft is not None:
        if args.stage != "codec" or not args.init:
            raise UsageError("--fine-fft adds a fine head to a trained codec and trains it alone: train codec --init CHECKPOINT --fine-fft 1920")
        other = _audio_losses_given(args) + [name for name in ("magnitudes_only", "phase_glide") if getattr(args, name)]
        if other:
            raise UsageError(f"--fine-fft trains the fine head on magnitudes alone; drop --{other[0].replace('_', '-')}")
        overrides["fine_fft"] = args.fine_fft
    if args.fine_context is not None:
        if args.fine_fft is None:
            raise UsageError("--fine-context says how many tokens before each the fine head reads; give --fine-fft too")
        overrides["fine_context"] = args.fine_context
    if args.fine_chorus_cents is not None:
        if args.fine_fft is None:
            raise UsageError("--fine-chorus-cents sets how the fine head's partials are voiced; give --fine-fft too")
        overrides["fine_chorus_cents"] = args.fine_chorus_cents
    if args.glide_rule and not args.phase_glide:
        raise UsageError("--glide-rule says where a gliding decoder glides; give --phase-glide too")
    if args.glide_prominence is not None:
        if not args.glide_rule:
            raise UsageError("--glide-prominence is the glide rule's threshold; give --phase-glide --glide-rule too")
        overrides["glide_prominence"] = args.glide_prominence
    if args.phase_glide or args.phase_weight is not None:
        if args.stage != "codec":
            raise UsageError("--phase-glide and --phase-weight apply to the codec only")
        overrides["phase_glide"], overrides["glide_rule"] = args.phase_glide, args.glide_rule
        overrides["phase_weight"] = args.phase_weight or 0.0
    if args.no_handcrafted:
        if args.stage != "mulan":
            raise UsageError("--no-handcrafted applies to mulan only")
        overrides["handcrafted"] = False
    if args.text_only:
        if args.stage != "mulan" or not args.init:
            raise UsageError("--text-only fine-tunes a trained MuLan's text side: train mulan --init <MuLan> --text-only")
        overrides["text_only"] = True
    if args.codebook:
        if args.stage != "semantic":
            raise UsageError("--codebook applies to semantic only")
        overrides["codebook"] = args.codebook
    run_dir = Path(args.run_dir or f"runs/{args.stage}-{args.preset}")
    try:
        result = TRAINERS[args.stage](corpus, args.preset, run_dir, overrides, progress=not args.quiet)
    except ValueError as exc:  # a recipe that refuses its --init (a codec it cannot fine-tune so): said before any step
        raise UsageError(str(exc)) from None
    if args.export:
        result["exported"] = str(_export(args.stage, run_dir))
    return {"run_dir": str(run_dir), **result}


def _tokenize(args: argparse.Namespace) -> dict:
    from .train.tokens import build_melody_cache, build_token_cache
    corpus = Path(args.corpus)
    if not (corpus / "train.jsonl").exists():
        raise UsageError(f"no corpus at {corpus}: build one with python -m engine data build --out {corpus} --hours 4")
    checkpoints = {k: getattr(args, k) for k in ("mulan", "semantic", "codec") if getattr(args, k)}
    built = {}
    try:
        for split in ("train", "test"):
            if args.only in (None, "tokens"):
                built[split] = str(build_token_cache(corpus, split, checkpoints, progress=not args.quiet))
            if args.only in (None, "melody"):
                built[f"melody-{split}"] = str(build_melody_cache(corpus, split, progress=not args.quiet, source=args.melody_source))
        return built
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


IMPORTED_AT = time.perf_counter()
SAMPLED_EVALUATIONS = ("generation", "story", "continuation", "style", "dynamics", "melody")  # the evaluations that take the generator's sampling options


def _process_age_s() -> float:
    """Seconds since this process started, as a user waiting at the prompt counts them (the
    interpreter, imports and model loading included); since this module's import where the
    system does not say."""
    age = process_age_s()
    return age if age is not None else time.perf_counter() - IMPORTED_AT


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _request(args: argparse.Namespace):
    """The request the flags describe, checked; a UsageError names the first problem."""
    if args.between and not args.inpaint:
        raise UsageError("--between START END goes with --inpaint CLIP")
    if args.inpaint and not args.between:
        raise UsageError("--inpaint CLIP needs the range to regenerate: --between START END (seconds)")
    if sum(map(bool, (args.story, args.continue_, args.inpaint, args.style, args.melody))) > 1:
        raise UsageError("--story, --continue, --inpaint, --style and --melody do not combine; choose one")
    if args.weights and not args.style:
        raise UsageError("--weights go with --style CLIP …: one per source, the prompt's first")
    settings = GenerationSettings(seconds=args.seconds, seed=args.seed, negative_prompt=args.negative or "", **_sampling_settings(args))
    if args.story:
        return StoryRequest(tuple(parse_story(_read_text(args.story))), settings)
    if args.continue_:
        return ContinueRequest(load_audio(args.continue_), args.prompt, settings)
    if args.inpaint:
        return InpaintRequest(load_audio(args.inpaint), args.between[0], args.between[1], args.prompt, settings)
    if args.melody:
        return HumRequest(load_audio(args.melody), args.prompt, settings)
    if args.style:
        return StyleRequest(tuple(load_audio(clip) for clip in args.style), args.prompt, tuple(args.weights) if args.weights else None, settings)
    return TextRequest(args.prompt, settings)


def _generate(args: argparse.Namespace, model: MusicLM | None = None, waited_s=_process_age_s, wanted=lambda: True) -> dict:
    """One piece to a file. ``model``: already loaded (``engine serve``'s), else loaded here;
    ``waited_s()``: how long the user has waited so far (here: this process's age); ``wanted()``:
    whether anyone still waits for the file (a served command stopped at its prompt does not)."""
    try:
        request = _request(args)
    except (ValueError, AudioError) as exc:
        raise UsageError(str(exc)) from None
    served = model is not None
    try:
        in_line = request.generated_seconds * args.candidates <= ONE_SHOT_INLINE_SECONDS
        model = model or MusicLM.load(device=args.device, parallel=False if in_line else None)
    except (FileNotFoundError, ValueError) as exc:  # a missing checkpoint, or --device cuda without a GPU
        raise UsageError(str(exc)) from None
    started = waited_s()
    try:
        audio, info = model.render(request, candidates=args.candidates)
    except ValueError as exc:  # what only the models can judge: a clip too short, a stage 1 without melody conditioning
        raise UsageError(str(exc)) from None
    record = request.record()
    extra = {"segments": len(record["segments"])} if "segments" in record else {}
    if "melody_frames" in record:
        extra["melody_frames"] = record["melody_frames"]
    if isinstance(request, InpaintRequest):
        extra["inpainted_s"] = [request.start, request.end]
    if isinstance(request, StyleRequest):
        extra.update(style_clips=len(request.clips), weights=list(request.weights))
    if isinstance(request, ContinueRequest):
        extra["continued_from_s"] = round(len(audio) / SAMPLE_RATE - request.generated_seconds, 3)
    if not wanted():
        raise ConnectionAbortedError("the command was stopped before its piece was written; nothing was saved")
    save_audio(args.out, audio)
    info["first_chunk_since_start_s"] = round(started + info["first_chunk_s"], 3)  # what a user waits for at the prompt
    return {"mode": request.mode, "prompt": record.get("prompt") or "", "out": str(args.out), **info, **extra, "device": model.device.type, "served": served,
            "peak_rss_mb": _peak_rss_mb(), "peak_abs": round(float(np.max(np.abs(audio))) if audio.size else 0.0, 4)}


def _serve(args: argparse.Namespace) -> dict:
    """Keep the models loaded and answer ``generate`` from other processes (engine/serve.py)."""
    if args.stop:
        return stop_server()
    def answer(argv: list[str], model: MusicLM, device: str, waited_s, wanted) -> dict:
        asked = parser().parse_args(["generate", *argv])
        if asked.device != "auto" and asked.device != device:
            raise Declined(asked.device)
        return _generate(asked, model, waited_s, wanted)  # a UsageError: its exit_code and one line

    try:
        return serve(answer, args.device, args.idle_minutes, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (ServerError, FileNotFoundError, ValueError) as exc:  # one running already, a missing checkpoint, no GPU
        raise UsageError(str(exc)) from None


def _live(args: argparse.Namespace) -> dict:
    """A scripted live run (or a saved timeline rendered again), with what a listener would get."""
    from .evaluate.live import FloatWav, judge_changes, parse_script, render_timeline, run_script
    try:
        if args.replay:
            record = json.loads(_read_text(args.replay))
        elif args.script:
            changes = parse_script(_read_text(args.script))
        elif args.prompt:
            changes = parse_script(json.dumps([{"at": 0, "prompt": args.prompt}]))
        else:
            raise ValueError("give a starting prompt or --script CHANGES.json (or --replay TIMELINE.json)")
        check_buffer(args.buffer)  # both checked before the models load
        out = FloatWav.checked(args.out)
        model = MusicLM.load(device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    if args.replay:
        try:
            return {"mode": "live replay", **render_timeline(model, record, out)}
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    settings = GenerationSettings(seed=args.seed)
    report, timeline = run_script(model, changes, args.minutes, out, settings, args.buffer, skip_waits=args.clock == "skip")
    timeline_path = Path(args.timeline or out.with_suffix(".timeline.json"))  # not OUT.json: a report redirected there would be overwritten
    atomic_write(timeline_path, lambda tmp: tmp.write_text(json.dumps(timeline, indent=1, ensure_ascii=False)))
    if args.judge:
        report["heard"] = judge_changes(model, out, timeline)
    return {"mode": "live", **report, "timeline": str(timeline_path), "peak_rss_mb": _peak_rss_mb(), "device": model.device.type}


def _read_text(path: str, limit: int = 1_000_000) -> str:
    """A small text file (a story JSON), or a ValueError that says why not."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"no such file: {path}")
    if file.stat().st_size > limit:
        raise ValueError(f"{file.name} is larger than {limit // 1000} kB; a story is a small JSON file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{file.name} is not UTF-8 text") from None


def _combine_codec(args: argparse.Namespace) -> dict:
    """A codec whose stated-phase decoder hands the steady partials it loses to a gliding one
    (``TwoPathDecoder``), saved as a run folder that loads, evaluates and exports like a trained one."""
    try:
        codec, gliding = load_codec(args.checkpoint), load_codec(args.partials)
        if gliding.cfg.partials and (args.gap, args.glide_above) != (None, None):
            raise ValueError(f"{args.partials} is combined already and keeps its own settings; drop --gap and --glide-above")
        gap = CodecConfig.partials_gap if args.gap is None else args.gap
        combined = with_stated(codec, gliding) if gliding.cfg.partials else with_partials(codec, gliding, gap, args.glide_above)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    run_dir = Path(args.out)
    if (run_dir / "state.json").exists() and not args.force:
        raise UsageError(f"{run_dir} already holds a run; choose another --out or add --force")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(combined.state_dict(), run_dir / "model.safetensors")
    stated = Path(args.checkpoint) if args.checkpoint else CHECKPOINT_DIR / "codec.safetensors"
    if stated.is_relative_to(Path.cwd()):  # the record names the parts as the command did, not by this machine's paths
        stated = stated.relative_to(Path.cwd())
    parts = {"stated": str(stated), "partials": str(args.partials), "gap": combined.cfg.partials_gap, "glide_above_hz": combined.cfg.partials_above_hz}
    save_json({"step": 0, "name": "codec", "config": {"preset": "cpu-small", **combined.config_dict()}, "train": {"combined": parts},
               "metrics": {}}, run_dir / "state.json")
    return {"run_dir": str(run_dir), **parts, **({"exported": str(_export("codec", run_dir))} if args.export else {})}


def _export(stage: str, run_dir: Path) -> Path:
    """Copy a run's weights to assets/checkpoints/<stage>.safetensors with its config."""
    target = CHECKPOINT_DIR / f"{stage}.safetensors"
    export_checkpoint(run_dir, target, half=stage.startswith("stage"))
    return target


def _codec(args: argparse.Namespace) -> dict:
    if args.codec_command == "combine":
        return _combine_codec(args)
    try:
        audio = load_audio(args.input)
    except AudioError as exc:
        raise UsageError(str(exc)) from None
    try:
        model = load_codec(args.checkpoint)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    levels = args.levels or model.cfg.levels
    if not 1 <= levels <= model.cfg.levels:
        raise UsageError(f"--levels must be between 1 and {model.cfg.levels}")
    t0 = time.perf_counter()
    with torch.inference_mode():
        codes = model.encode(torch.from_numpy(audio)[None], levels)
        out = model.decode(codes)[0, : len(audio)].numpy()
    wall = time.perf_counter() - t0
    save_audio(args.output, out)
    seconds = len(audio) / SAMPLE_RATE
    return {
        "input": str(args.input), "output": str(args.output), "seconds": round(seconds, 3), "sample_rate": SAMPLE_RATE,
        "levels": levels, "tokens": int(codes.shape[-1]), "frame_rate_hz": SAMPLE_RATE / HOP,
        "kbps": model.cfg.bits_per_second * levels / model.cfg.levels / 1000, "wall_s": round(wall, 4), "rtf": round(wall / seconds, 4),
    }


def _add_sampling_arguments(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """How each stage draws its tokens; unset options keep ``GenerationSettings``' defaults, so the
    generator, its evaluation and the studio share one set of numbers."""
    d = GenerationSettings()
    parser.add_argument("--guidance", type=_positive_float, help=f"{scope}classifier-free guidance scale on stage 1 (default {d.guidance})")
    parser.add_argument("--coarse-guidance", type=_positive_float, help=f"{scope}classifier-free guidance scale on stage 2 (default {d.coarse_guidance}; 1 = off, faster)")
    parser.add_argument("--style-guidance", type=_positive_float,
                        help=f"{scope}--style: guidance on the clips' style (default {d.style_guidance}); words beside it keep --guidance")
    parser.add_argument("--style-coarse-guidance", type=_positive_float,
                        help=f"{scope}--style: stage 2's guidance toward the clips, in place of --coarse-guidance (default {d.style_coarse_guidance:g})")
    parser.add_argument("--top-k", type=int, help=f"{scope}keep the k likeliest tokens (default {d.top_k}: off)")
    parser.add_argument("--temperatures", type=_temperature, nargs=3, metavar=("T1", "T2", "T3"),
                        help=f"{scope}each stage's sampling temperature (default {' '.join(map(str, d.temperatures))})")
    parser.add_argument("--fine-stage", action="store_true",
                        help=f"{scope}stage 3 writes codec levels 5–12 (the paper's; off by default: its fine levels are no better than chance, and levels 1–4 alone decode cleaner)")
    parser.add_argument("--tempo-drafts", type=_positive_int,
                        help=f"{scope}a prompt stating a tempo: stage 1 drafts under N readings of it and keeps one that plays it (default {d.tempo_drafts}; 1 = off)")
    parser.add_argument("--tempo-draft-seconds", type=_positive_float, metavar="S",
                        help=f"{scope}how much of stage 1 each tempo draft covers (default {d.tempo_draft_seconds:g}; the first chunk waits for it)")
    parser.add_argument("--models-level", action="store_true",
                        help=f"{scope}keep the loudness the models make: a prompt's loud or quiet is not steered to (the level stage off)")
    parser.add_argument("--models-tone", action="store_true",
                        help=f"{scope}--style: keep the spectral balance the models make: the clips' tone is not matched (the tone stage off)")


def _sampling_settings(args: argparse.Namespace) -> dict:
    """The ``GenerationSettings`` fields the sampling options set (those given only)."""
    given = {"guidance": args.guidance, "coarse_guidance": args.coarse_guidance, "style_guidance": args.style_guidance,
             "style_coarse_guidance": args.style_coarse_guidance, "top_k": args.top_k,
             "temperatures": tuple(args.temperatures) if args.temperatures else None, "tempo_drafts": args.tempo_drafts,
             "tempo_draft_seconds": args.tempo_draft_seconds,
             "fine_stage": True if args.fine_stage else None, "level_stage": False if args.models_level else None,
             "tone_match": False if args.models_tone else None}
    return {k: v for k, v in given.items() if v is not None}


def _eval(args: argparse.Namespace) -> dict:
    from .evaluate.generation import eval_free_form
    from .evaluate.report import run_all, write_report
    corpus = Path(args.corpus)
    if args.what not in ("tones", "recordings") and not (corpus / "test.jsonl").exists():  # tones are made, recordings found elsewhere
        raise UsageError(f"no corpus at {corpus}")
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    judge = Path(args.judge) if args.judge else None
    if judge and not judge.exists():
        raise UsageError(f"no MuLan at {judge}")
    if args.audio and args.what not in ("recordings", "style"):
        raise UsageError("--audio applies to eval recordings and eval style only")
    if args.words is not None and args.what != "style":
        raise UsageError("--words applies to eval style only")
    if args.soundfont and args.what != "codec":
        raise UsageError("--soundfont applies to eval codec only")
    if args.tuning and args.free_form:
        raise UsageError("--tuning and --free-form are two different prompt sets; choose one")
    if args.tuning and args.what not in ("generation", "melody"):
        raise UsageError("--tuning applies to eval generation and eval melody only")
    if (args.free_form or args.judge) and args.what != "generation":
        raise UsageError("--free-form and --judge apply to eval generation only")
    if _sampling_settings(args) and args.what not in SAMPLED_EVALUATIONS:
        raise UsageError("the sampling options (--temperatures, --guidance, --coarse-guidance, --style-guidance, --style-coarse-guidance, --top-k, --tempo-drafts, "
                         "--tempo-draft-seconds, --fine-stage, --models-level, --models-tone) "
                         f"apply to eval {', '.join(SAMPLED_EVALUATIONS)} only")
    try:
        GenerationSettings(**_sampling_settings(args)).check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.what == "all":
        results = run_all(corpus, checkpoint, args.plan, tuple(args.only or ()), progress=lambda line: print(line, file=sys.stderr))
        report = write_report(results, Path(args.out))
        print(f"report: {report}", file=sys.stderr)
        return results
    try:
        extra = {"seconds": args.seconds, "seeds": args.seeds} if args.what in ("generation", "story", "continuation", "dynamics") else {}
        if args.what == "generation":
            if args.free_form:
                return eval_free_form(corpus, checkpoint, args.clips, args.seconds, args.seeds, judge, **_sampling_settings(args))
            extra.update(tuning=args.tuning, judge=judge)
        if args.what == "melody":
            extra = {"seconds": args.seconds, "tuning": args.tuning}
        if args.what == "style":
            extra = {"seconds": args.seconds, "seeds": args.seeds, "folders": tuple(args.audio) if args.audio else None, "words": _words(args.words)}
        if args.what in SAMPLED_EVALUATIONS:
            extra.update(_sampling_settings(args))
        if args.what == "recordings" and args.audio:
            extra = {"folders": tuple(args.audio)}
        if args.soundfont:
            extra = {"soundfont": _soundfont(args.soundfont)}
        return EVALUATORS[args.what](corpus, checkpoint, args.clips, **extra)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def _words(words: str | None) -> str | None:
    """``eval style --words``: cleaned like a prompt, or one line saying why not."""
    if words is None:
        return None
    try:
        return clean_prompt(words)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _soundfont(name: str) -> Path:
    from .data.render import bundled_soundfont
    path = bundled_soundfont() if name.lower() == "timgm6mb" else Path(name)
    if path is None or not path.is_file():
        raise UsageError(f"--soundfont {name}: no such SoundFont file" + (" (pretty_midi is not installed)" if path is None else ""))
    return path


def _bench(args: argparse.Namespace) -> dict:
    from .evaluate.bench import bench_cli, bench_codec, bench_commands, bench_generate, bench_peer, bench_stage_steps
    try:
        if args.what == "codec":
            return bench_codec(args.seconds)
        if args.what == "peer":
            return bench_peer(args.seconds)
        if args.what == "stages":
            return bench_stage_steps()
        if args.what == "cli":
            return bench_commands(args.seconds, args.repeats)
        parallel = {"auto": None, "on": True, "off": False}[args.parallel]
        if args.threads:
            torch.set_num_threads(args.threads)
        result = bench_generate(tuple(args.lengths), parallel=parallel, device=args.device)
        if args.what == "all":  # ours and the peer architecture, same machine, same cores, same run
            peer = bench_peer(args.seconds)
            ours = result["runs"].get(f"{args.seconds:g}s") or bench_generate((args.seconds,), parallel=parallel)["runs"][f"{args.seconds:g}s"]
            cli = bench_cli(args.seconds)
            result["peer"] = {**peer, "our_speedup_in_process_x": round(peer["wall_s"] / ours["wall_s"], 1),
                              "our_cli": cli, "our_speedup_as_commands_x": round(peer["cold_s"] / cli["process_wall_s"], 1),
                              "ours": {"torch": torch.__version__, "threads": result["threads"], "processes": 1 + result["upstream_processes"]}}
            if args.device == "cpu" and "cuda" in available_devices():  # the GPU too, where this machine has one
                result["cuda"] = bench_generate(tuple(args.lengths), parallel=False, device="cuda")
        return result
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _retrain(args: argparse.Namespace) -> dict:
    return _chain(args.chain, args.corpus, args.runs, args.status)


def _chain(name: str, corpus: str, runs: str | None, status: bool = False) -> dict:
    if status:
        result = chain_status(name, Path(runs) if runs else None)
        for row in result["steps"]:
            progress = f", at step {row['at_step']:,} of {row['of_steps']:,}" if "at_step" in row else ""
            print(f"{row['step']:>22}  {row['state']}" + (f" ({row['wall_s']:,.0f} s{progress})" if "wall_s" in row else ""), file=sys.stderr)
        print(f"{result['done']} of {result['of']} steps done, {result['spent_s'] / 3600:.1f} h spent", file=sys.stderr)
        return result
    try:
        return run_chain(name, Path(corpus), Path(runs) if runs else None, log=lambda line: print(line, file=sys.stderr))
    except (RuntimeError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None


def _models(args: argparse.Namespace) -> dict:
    return {"models": model_status()}


STATUS_HELP = "say where the chain stands (each step done, begun or waiting, and the time spent) and run nothing"


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m engine", description="hummingbird: MusicLM, offline.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build the synthetic training corpus")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="render a captioned corpus with ground truth")
    b.add_argument("--out", required=True, help="output folder (kept out of git)")
    b.add_argument("--hours", type=_positive_float, default=1.0)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--clip-seconds", type=_positive_float, default=20.0)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    m = data_sub.add_parser("melodies", help="re-extract the music21 melody index into assets/")
    m.add_argument("--workers", type=int, default=2)
    data.set_defaults(run=_data)

    t = sub.add_parser("train", help="train a model from the corpus (resumable; works under torchrun)")
    t.add_argument("stage", choices=(*MODEL_NAMES, "all"), help="one model, or all: every model from nothing (corpus → codec → MuLan → "
                   "semantic → token caches → prior → stages → eval all), each step resumable; --run-dir is then the chain's folder (default runs/all)")
    t.add_argument("--preset", choices=("cpu-small", "gpu-base"), default="cpu-small")
    t.add_argument("--corpus", default="corpus")
    t.add_argument("--run-dir", help="checkpoints and resume state (default runs/<stage>-<preset>)")
    t.add_argument("--status", action="store_true", help=f"with all: {STATUS_HELP}")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--max-minutes", type=_positive_float, help="stop with a checkpoint after this long")
    t.add_argument("--lr", type=_positive_float, help="peak learning rate (default: the preset's)")
    t.add_argument("--warmup", type=int, help="warm-up steps (default: the preset's)")
    t.add_argument("--init", help="fine-tune from this trained checkpoint (an exported .safetensors or a run folder)")
    t.add_argument("--descriptor-weight", type=_positive_float,
                   help="codec fine-tune: scale of the chroma and MFCC-spread terms beside the reconstruction loss (default 1)")
    t.add_argument("--pitch-weight", type=_positive_float,
                   help="codec: weight of a 4096-point log-STFT term that keeps the notes (default 0: off; in a decoder fine-tune, it keeps them there)")
    t.add_argument("--note-weight", type=_positive_float,
                   help="codec from scratch: weight of a head that reads the notes (the score's pitch classes) from the first two RVQ levels (default 0: off)")
    t.add_argument("--recorded-share", type=_fraction,
                   help="codec from scratch: share of training crops taken from recorded music instead of the corpus (default 0)")
    t.add_argument("--recorded", nargs="+", metavar="FOLDER",
                   help="codec from scratch: folders of recorded music for --recorded-share (default: six Debian game soundtracks)")
    t.add_argument("--tone-share", type=_fraction,
                   help="codec: share of training crops that are synthetic pure and harmonic tones, 55–1500 Hz (default 0)")
    t.add_argument("--phase-glide", action="store_true",
                   help="codec: a decoder whose phases run on from frame to frame, so steady notes leave the 50 Hz comb (with --init: added to the trained decoder)")
    t.add_argument("--glide-rule", action="store_true",
                   help="codec with --phase-glide: glide wherever a partial stands out and holds its level (a rule), instead of where learnt gates say")
    t.add_argument("--glide-prominence", type=_positive_float, metavar="NATS",
                   help="codec with --glide-rule: how far a steady partial's peak stands above the mean of the 17 bins around it (default 2.5)")
    t.add_argument("--phase-vector", action="store_const", const=True,
                   help="codec from scratch: the decoder states each phase as a 2-vector's angle, which can follow a partial's phase all the way round")
    t.add_argument("--phase-weight", type=_positive_float,
                   help="codec: weight of the decoder's own frames held to the target STFT's: instantaneous frequency and log-magnitude (default 0: off)")
    t.add_argument("--spectrum-weight", type=_positive_float,
                   help="codec: weight of the decoder's own frames' power-compressed spectra (magnitude and complex) against the target's (default 0: off)")
    t.add_argument("--magnitude-weight", type=_positive_float,
                   help="codec: weight of the decoder's own frames' power-compressed magnitudes against the target's where it has a steady partial (default 0: off)")
    t.add_argument("--onset-weight", type=_positive_float,
                   help="codec: weight of the output's attacks (rises of its 512-point spectrum) against the target's (default 0: off)")
    t.add_argument("--coarse-share", type=_fraction,
                   help="codec with --init: share of the crops the decoder learns to decode from levels 1–4 alone, what generation decodes (default 0)")
    t.add_argument("--magnitudes-only", action="store_true",
                   help="codec with --init: the decoder learns its frames' magnitudes alone, no loss on the audio (a gliding decoder's first fine-tune)")
    t.add_argument("--fine-fft", type=_positive_int, metavar="POINTS",
                   help="codec fine-tune: add a magnitude head this long (1920) to the gliding decoder and train it alone; the output's "
                        "prominent partials are revoiced from it")
    t.add_argument("--fine-context", type=_positive_int, metavar="TOKENS",
                   help="codec with --fine-fft: the fine head also reads this many tokens before each (4: its partials hold steadier, off the 50 Hz comb; default 0)")
    t.add_argument("--fine-chorus-cents", type=_positive_float, metavar="CENTS",
                   help="codec with --fine-fft: each revoiced partial above 1 kHz sounds beside a copy this many cents sharp, "
                        "as the renders' chorus spreads theirs (10; default: as the init codec has it, none for a new head)")
    t.add_argument("--phase-beyond-levels", type=_positive_int, metavar="N",
                   help="codec from scratch: that spectrum's phase counts only for decodes from more than N levels, so the first N "
                        "(what stage 2 writes) keep their bits for the notes (default: every decode)")
    t.add_argument("--critic-weight", type=_positive_float,
                   help="codec: weight of a critic (--critic-kind) on the decoder: hinge loss, and twice that on feature matching (default 0: none)")
    t.add_argument("--critic-after", type=_positive_int, metavar="STEPS",
                   help="codec with --critic-weight: steps in which the critic learns before the decoder hears it (default 0)")
    t.add_argument("--critic-kind", choices=("stft", "fine"),
                   help="codec with --critic-weight: stft (the complex STFT at 12 and 23 Hz bins, default) or fine (8,192-point frames' "
                        "fine structure, 90–3,000 Hz, which hears a comb on the token rate's grids)")
    t.add_argument("--export", action="store_true", help="copy the result to assets/checkpoints/")
    t.add_argument("--no-handcrafted", action="store_true", help="mulan: audio tower without the handcrafted descriptors (ablation)")
    t.add_argument("--text-only", action="store_true",
                   help="mulan with --init: fine-tune the text side alone, keeping the audio tower and RVQ (and so every M token)")
    t.add_argument("--codebook", choices=("flat", "joint"),
                   help="semantic: k-means on the token layer joined with its harmony and rhythm read-outs (joint: the presets, the shipped tokens) or on the layer alone (flat, as MusicLM)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(run=_train)

    g = sub.add_parser("generate", help="text → music (or a hum, a story, a clip to continue or inpaint)")
    g.add_argument("prompt", nargs="?", default="", help="the music to make (optional with --story; with --continue, a new direction)")
    g.add_argument("--seconds", type=_positive_float, default=10.0)
    g.add_argument("--out", default="out.wav")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--negative", help="negative prompt: steer away from this description")
    _add_sampling_arguments(g)
    g.add_argument("--candidates", type=_positive_int, default=1, help="generate N (seeds seed…seed+N−1), keep the best MuLan match")
    g.add_argument("--melody", metavar="HUM", help="a hum or whistle (1–60 s, any format soundfile reads) for the music to follow; the prompt sets the style")
    g.add_argument("--continue", dest="continue_", metavar="CLIP", help="continue this clip (any format soundfile reads); --seconds of new music")
    g.add_argument("--inpaint", metavar="CLIP", help="regenerate a time range of this clip (with --between); the prompt, if any, sets its style")
    g.add_argument("--between", type=float, nargs=2, metavar=("START", "END"), help="--inpaint: the range in seconds")
    g.add_argument("--style", nargs="+", metavar="CLIP", help="new music in the style of these clips (any format soundfile reads), "
                   "mixed with the prompt if there is one")
    g.add_argument("--weights", type=float, nargs="+", metavar="W", help="--style: each source's weight in the blend, the prompt's first (default: equal)")
    g.add_argument("--story", metavar="JSON", help='a timeline: {"segments": [{"prompt": …, "seconds": …}, …]}; --seconds is ignored')
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU when one is visible, else the CPU")
    g.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    g.add_argument(IN_PROCESS_FLAG, action="store_true", help="load the models in this process even when `python -m engine serve` is running, and start no server behind it")
    g.set_defaults(run=_generate)

    lv = sub.add_parser("live", help="an endless stream steered while it plays, here by a script of changes (or a saved run rendered again)")
    lv.add_argument("prompt", nargs="?", default="", help="what it starts with (or the first change of --script)")
    lv.add_argument("--script", metavar="JSON", help='changes in playback seconds: [{"at": 0, "prompt": …}, {"at": 20, "prompt": …, "bpm": 100}, '
                                                  '{"at": 40, "blend": [["…", 0.7], ["…", 0.3]]}, …]')
    lv.add_argument("--minutes", type=_positive_float, default=1.0, help="how much music to play")
    lv.add_argument("--out", default="live.wav", help="the audio (32-bit float WAV); its timeline goes beside it as .timeline.json")
    lv.add_argument("--timeline", metavar="JSON", help="where the run's timeline goes (default: OUT with .timeline.json)")
    lv.add_argument("--replay", metavar="TIMELINE", help="render a saved timeline again, without a clock: the same audio, sample for sample")
    lv.add_argument("--buffer", type=_positive_float, default=DEFAULT_BUFFER, help="seconds the stream may run ahead of playback")
    lv.add_argument("--clock", choices=("wall", "skip"), default="wall",
                    help="wall: real time, as a listener hears it; skip: the stream's waits skipped (an hour in its compute time; underruns counted no fewer)")
    lv.add_argument("--judge", action="store_true", help="after the run, MuLan says how soon each change is heard")
    lv.add_argument("--seed", type=int, default=0)
    lv.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    lv.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    lv.set_defaults(run=_live)

    tk = sub.add_parser("tokenize", help="cache M_A, S, A and the melody tokens of every corpus clip for the stage LMs")
    tk.add_argument("--corpus", default="corpus")
    for name in ("mulan", "semantic", "codec"):
        tk.add_argument(f"--{name}", help=f"{name} checkpoint or run folder (default: assets/checkpoints)")
    tk.add_argument("--only", choices=("tokens", "melody"), help="build one cache: M/S/A tokens, or the tracked melody tokens (stage 1's hum input)")
    tk.add_argument("--melody-source", choices=MELODY_SOURCES, default="tracked",
                    help="melody tokens tracked from each clip's rendition, as a hum is (about 1 s a clip), or read from its score (instant)")
    tk.add_argument("--quiet", action="store_true")
    tk.set_defaults(run=_tokenize)

    c = sub.add_parser("codec", help="neural codec tools")
    c_sub = c.add_subparsers(dest="codec_command", required=True)
    rt = c_sub.add_parser("roundtrip", help="encode + decode a file through the codec")
    rt.add_argument("input")
    rt.add_argument("output")
    rt.add_argument("--levels", type=int, help="RVQ levels to keep (bitrate = levels × 0.5 kbps)")
    rt.add_argument("--checkpoint", help="codec .safetensors or a training run folder")
    rt.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    cb = c_sub.add_parser("combine", help="voice the steady partials a codec's decoder loses by a gliding decoder fine-tuned from it")
    cb.add_argument("--partials", required=True, help="the gliding decoder's run (train codec --init … --phase-glide --glide-rule), "
                                                      "or a combined codec whose gliding decoder, fine head and settings to keep beside a new stated decoder")
    cb.add_argument("--checkpoint", help="the codec whose decoder makes every other frame (default: the shipped one)")
    cb.add_argument("--gap", type=_positive_float,
                    help=f"nats by which the gliding decoder's partial must stand above the first decoder's level to be voiced by it (default {CodecConfig.partials_gap:g})")
    cb.add_argument("--glide-above", type=_positive_float, metavar="HZ",
                    help="every steady partial above this frequency is voiced by the gliding decoder, wherever the first has it (default: none)")
    cb.add_argument("--out", required=True, help="the run folder to write")
    cb.add_argument("--export", action="store_true", help="also copy it to assets/checkpoints/codec.safetensors")
    cb.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    cb.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    c.set_defaults(run=_codec)

    e = sub.add_parser("eval", help="quality metrics as JSON")
    e.add_argument("what", choices=(*EVALUATORS, "all"))
    e.add_argument("--corpus", default="corpus")
    e.add_argument("--checkpoint", help="a checkpoint file or run folder (generation: a folder holding every model)")
    e.add_argument("--soundfont", metavar="SF2",
                   help="codec: render the test clips again from their MIDI through this SoundFont (timgm6mb: the one inside pretty_midi)")
    e.add_argument("--audio", nargs="+", metavar="FOLDER", help="recordings, style: folders of recorded music (recordings' default: the held-out Debian game soundtracks; style's: the test renders)")
    e.add_argument("--clips", type=int, help="evaluate only the first N test clips (generation: N test captions, default 30; tones: N frequencies, default 24)")
    e.add_argument("--seconds", type=_positive_float, default=10.0, help="generation, story, continuation: seconds per generated clip / segment")
    e.add_argument("--seeds", type=_positive_int, default=3, help="generation: seeds per caption (MCC, tempo) and per contrasting prompt pair; story: draws per tempo story; style: pieces per reference clip")
    _add_sampling_arguments(e, f"{', '.join(SAMPLED_EVALUATIONS)}: ")
    e.add_argument("--words", metavar="TEXT", help="style: words mixed into every style at weight 0.5 (the clip at 1), "
                                                   "to weigh --guidance (the words) against --style-guidance (the clip)")
    e.add_argument("--free-form", action="store_true",
                   help="generation: the held-out free-form prompts (assets/eval/free-form-prompts.json) instead of test captions")
    e.add_argument("--judge", metavar="MULAN", help="generation: the MuLan checkpoint or run folder that grades MCC and Fréchet MuLan "
                                                    "(default: the judged set's own), so sets with different MuLans meet the same ear")
    e.add_argument("--tuning", action="store_true",
                   help="generation: the tuning captions (60 test captions kept apart from the evaluation's 30) instead; melody: the "
                        "test clips after the evaluation's 20; for choosing settings")
    e.add_argument("--plan", choices=("quick", "full"), default="quick",
                   help="all: quick (14 min on a 2-core CPU: fewer clips and seconds, the same seeds) or full (every command's defaults)")
    e.add_argument("--only", nargs="+", choices=tuple(EVALUATORS), help="all: run only these evaluations")
    e.add_argument("--out", default="docs", help="all: where RESULTS.md, results.json and the plots go")
    e.add_argument("--json", action="store_true")
    e.set_defaults(run=_eval)

    bn = sub.add_parser("bench", help="speed and memory as JSON")
    bn.add_argument("what", choices=("all", "generate", "peer", "codec", "stages", "cli"), nargs="?", default="all",
                    help="all = generate at every length + the MusicGen-small architecture at --seconds (default); "
                         "stages = each stage LM's decode step alone, with its profile; "
                         "cli = the wait at the prompt, from process start to first chunk: one-shot commands and commands a running `serve` answers")
    bn.add_argument("--seconds", type=_positive_float, default=10.0, help="codec / peer: audio length")
    bn.add_argument("--lengths", type=_positive_float, nargs="+", default=[10.0, 60.0, 300.0], help="generate: the lengths to time")
    bn.add_argument("--threads", type=_positive_int, help="torch intra-op threads (default: torch's choice)")
    bn.add_argument("--parallel", choices=("auto", "on", "off"), default="auto",
                    help="run the semantic and coarse stages on processes of their own (auto: with two or more cores)")
    bn.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="generate: where to run (all: CUDA is added when present)")
    bn.add_argument("--repeats", type=_positive_int, default=5, help="cli: commands per prompt, one-shot and served")
    bn.add_argument("--json", action="store_true")
    bn.set_defaults(run=_bench)

    rt_chain = sub.add_parser("retrain", help="run every step a change needs, in order, each resumable (engine/train/pipeline.py)")
    rt_chain.add_argument("chain", choices=tuple(CHAINS), help="acoustic: the pitch-true codec, its tokens, stages 2 and 3, their judges; all: every model (= train all)")
    rt_chain.add_argument("--corpus", default="corpus")
    rt_chain.add_argument("--runs", help="where the runs, logs and step times go (default runs/<chain>)")
    rt_chain.add_argument("--status", action="store_true", help=STATUS_HELP)
    rt_chain.set_defaults(run=_retrain)

    sv = sub.add_parser("serve", help="keep the models loaded: `generate` in other shells then starts in a fraction of a second "
                        f"(a one-shot `generate` starts one behind it unless {SERVER_SWITCH}=off)")
    sv.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sv.add_argument("--idle-minutes", type=_positive_float, default=IDLE_MINUTES, help=f"stop after this long without a request (default {IDLE_MINUTES:g})")
    sv.add_argument("--stop", action="store_true", help="end the running server for this checkout and its checkpoints")
    sv.set_defaults(run=_serve)

    models = sub.add_parser("models", help="which checkpoints are present and how to train the rest")
    models.set_defaults(run=_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0
