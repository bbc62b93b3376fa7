"""`eval generation`: MuLan cycle consistency, tempo, contrast pairs and Fréchet distances of generated music."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import SAMPLE_RATE, log_mel_l1
from ..data.build import read_records
from ..features import FRAME_RATE, analyze, corpus_frames, window_descriptor
from ..generate.musiclm import MusicLM
from ..generate.settings import GenerationSettings
from ..nn.lm import COARSE_LEVELS, windowed
from ..nn.mulan import MuLan, load_mulan
from ..prompts import stated_bpm
from .common import mean_rows, through_codec
from .metrics import TEMPO_TOLERANCE, comb_share, descriptors, estimated_bpm, frechet_distance, rms, tempo_error
from .transcribe import transcribe

EVALUATION_CAPTIONS = 30  # eval generation's test captions



TUNING_CAPTIONS = 60  # the next ones, kept apart for choosing generation settings (--tuning)



def _generation_set(records: list[dict], n: int, tuning: bool = False) -> list[dict]:
    """``n`` test captions, two thirds of them stating a bpm so tempo adherence has enough prompts;
    ``tuning``: drawn from those outside the evaluation's ``EVALUATION_CAPTIONS``, so settings can
    be chosen on captions the reported figures never see."""
    if tuning:
        kept = {r["id"] for r in _generation_set(records, EVALUATION_CAPTIONS)}
        records = [r for r in records if r["id"] not in kept]
    timed = [r for r in records if stated_bpm(r["caption"])][: (2 * n) // 3]
    return timed + [r for r in records if not stated_bpm(r["caption"])][: n - len(timed)]



def _judge(model: MusicLM, judge: Path | None) -> tuple[MuLan, str]:
    """The MuLan that grades and its name for the report: the set's own, or ``judge``, so two sets
    whose MuLans differ can be graded by the same ear (a MuLan also grades how near its own M tokens
    steered the music)."""
    return (load_mulan(judge), str(judge)) if judge else (model.mulan, "own MuLan")


def _render_frames(corpus: Path, records: list[dict], seconds: float) -> list[np.ndarray]:
    """The analysis frames of the first ``seconds`` of each test render (cached as float16)."""
    return [f[:, : int(seconds * FRAME_RATE)].astype(np.float32) for f in corpus_frames(corpus, records)]


def _contrast(model, base: GenerationSettings, seeds: int, pairs=None) -> dict:
    """Does B move what it asks for against A? ``pairs``: (A, B) — B asks for more percussive, busier
    and brighter music, all three must rise (``CONTRAST_PAIRS``) — or (A, B, feature): the one
    feature B names must rise (``descriptors``' or "rms", loudness)."""
    rows = []
    for pair in pairs or CONTRAST_PAIRS:
        a, b, named = (*pair, None)[:3]
        judged = (named,) if named else ("percussive_ratio", "onset_rate", "spectral_centroid")
        deltas = []
        for seed in range(seeds):
            settings = replace(base, seed=seed)
            da, db = (_contrast_features(model.generate(p, settings)[0]) for p in (a, b))
            deltas.append({k: db[k] - da[k] for k in judged})
        mean = {k: round(float(np.mean([d[k] for d in deltas])), 4) for k in deltas[0]}
        rows.append({"a": a, "b": b, **({"feature": named} if named else {}), "mean_b_minus_a": mean, "moved": all(v > 0 for v in mean.values()),
                     "seeds_all_moved": sum(all(v > 0 for v in d.values()) for d in deltas)})
    features = sorted({k for r in rows for k in r["mean_b_minus_a"]})
    per_feature = {k: sum(r["mean_b_minus_a"].get(k, 0) > 0 for r in rows) for k in features}
    return {"seeds": seeds, "pairs_moved": sum(r["moved"] for r in rows), "of": len(rows), "per_feature": per_feature, "pairs": rows}


def _contrast_features(audio: np.ndarray) -> dict[str, float]:
    return {**descriptors(audio), "rms": rms(audio)}


def _fine_stage_fidelity(model, corpus: Path, records: list[dict], seconds: float) -> dict:
    """Does stage 3 help? On test renders: the codec's own coarse levels (1–4) completed by stage 3,
    against the coarse levels alone and against all 12 true levels (the codec's ceiling), as
    log-mel L1 to the render (lower is better)."""
    stage3 = model.stages["stage3"]
    rows = []
    for i, record in enumerate(records):
        audio, _ = sf.read(str(Path(corpus) / record["audio"]), dtype="float32", frames=int(seconds * SAMPLE_RATE))
        with torch.inference_mode():
            codes = model.codec.encode(torch.from_numpy(audio)[None])
            coarse = codes[:, :COARSE_LEVELS]
            fine = torch.cat(list(windowed(stage3, coarse.shape[2], [(0, None)], {"A_coarse": coarse}, stage3.cfg.layout.sampling,
                                           torch.Generator().manual_seed(i))), 2)
            decoded = {"coarse_plus_stage3": torch.cat([coarse, fine], 1), "coarse_only": coarse, "all_true_levels": codes}
            reference = torch.from_numpy(audio)
            rows.append({k: log_mel_l1(reference, model.codec.decode(v)[0, : len(audio)]) for k, v in decoded.items()})
    return {"clips": len(rows), **mean_rows(rows)}



def eval_generation(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0,
                    seeds: int = 3, tuning: bool = False, judge: Path | None = None, **settings) -> dict:
    """Issue 5's adherence metrics on test captions never seen in training: MuLan cycle
    consistency (MCC) against reference renders of the same captions, tempo adherence, contrasting
    prompt pairs, and Fréchet distances to the test renders — each also for the unconditioned
    generator (null M), the baseline that shows what the text adds. Two more rows locate the
    losses: the render through the codec (what a perfect token generator would reach) and stages
    2–3 run on the render's own S instead of stage 1's ("true_semantic").

    Every caption is generated with ``seeds`` seeds (caption i, round k: seed k × captions + i, so
    round 0 is the one-seed protocol); one draw per caption leaves the MCC ratio ±0.02 and the tempo
    share ±2 prompts, so each round's own figures are reported beside the pooled ones.
    ``tuning``: the tuning captions instead (``_generation_set``), ``TUNING_CAPTIONS`` by default;
    ``judge``: another MuLan grades MCC and Fréchet MuLan (``_judge``), the set's own otherwise;
    ``settings``: the generator's own settings to change (``GenerationSettings`` fields: tempo_drafts,
    fine_stage, temperatures, coarse_guidance …), its defaults otherwise."""
    t0 = time.perf_counter()
    base = GenerationSettings(seconds=seconds, **settings)
    base.check()
    model = MusicLM.load(checkpoint)
    mulan, judged_by = _judge(model, judge)
    records = read_records(corpus, "test")
    reference_frames = _render_frames(corpus, records, seconds)
    reference = {"mulan": np.stack([mulan.embed_frames(f).numpy() for f in reference_frames]),
                 "handcrafted": np.stack([window_descriptor(f) for f in reference_frames])}
    index = {r["id"]: i for i, r in enumerate(records)}
    chosen = _generation_set(records, clips or (TUNING_CAPTIONS if tuning else EVALUATION_CAPTIONS), tuning)
    # reference_through_codec: the render encoded and decoded by the codec, what a perfect token generator would reach
    kinds = ("generated", "unconditional", "reference", "reference_through_codec", "true_semantic")
    drawn = ("generated", "unconditional", "true_semantic")  # the kinds that depend on the seed
    mcc = {k: [] for k in kinds}  # per kind: (round, score) pairs
    tempo = {k: [] for k in kinds}  # per kind: (round, relative error) pairs
    embeddings = {k: {"mulan": [], "handcrafted": []} for k in kinds[:2]}
    # how clear the notes are, by ears nobody here trained: basic-pitch's notes per second, and the energy on the 50 Hz comb
    clarity = {k: {"notes_per_second": [], "comb_share": []} for k in ("generated", "reference", "reference_through_codec")}
    rtf = []
    for i, record in enumerate(chosen):
        longer, _ = sf.read(str(Path(corpus) / record["audio"]), dtype="float32", frames=int((seconds + 1) * SAMPLE_RATE))
        rendered = longer[: int(seconds * SAMPLE_RATE)]
        slack = max(0, int((seconds + 1) * SAMPLE_RATE) - len(longer))  # a second more of the render: S for every frame
        own_s = model.semantic.tokenize(np.pad(longer, (0, slack)))[None, None]
        text = mulan.embed_text([record["caption"]])[0].numpy()
        bpm = stated_bpm(record["caption"])
        pieces = [(0, "reference", rendered), (0, "reference_through_codec", through_codec(model.codec, rendered))]
        for round_ in range(seeds):
            settings = replace(base, seed=round_ * len(chosen) + i)
            generated, info = model.generate(record["caption"], settings)
            rtf.append(info["rtf"])
            pieces += [(round_, "generated", generated),
                       (round_, "unconditional", model.generate(record["caption"], settings, unconditional=True)[0]),
                       (round_, "true_semantic", model.generate(record["caption"], settings, semantic=own_s)[0])]
        for round_, kind, audio in pieces:
            if kind == "reference":
                emb = reference["mulan"][index[record["id"]]]
            else:
                frames = analyze(torch.from_numpy(audio))[0].numpy()
                emb = mulan.embed_frames(frames).numpy()
            if kind in embeddings:
                embeddings[kind]["mulan"].append(emb)
                embeddings[kind]["handcrafted"].append(window_descriptor(frames))
            mcc[kind].append((round_, float(text @ emb)))
            if kind in clarity:
                clarity[kind]["notes_per_second"].append(len(transcribe(audio)) / seconds)
                clarity[kind]["comb_share"].append(comb_share(audio))
            if bpm:
                tempo[kind].append((round_, tempo_error(estimated_bpm(audio), bpm)))

    def mean(rows, keep=lambda r: True, score=lambda x: x) -> float:
        return round(float(np.mean([score(x) for r, x in rows if keep(r)])), 4)

    def within(error: float) -> bool:
        return error <= TEMPO_TOLERANCE

    scale = {"mulan": 1.0, "handcrafted": reference["handcrafted"].std(0) + 1e-6}  # descriptors mix units: standardize by the renders
    enough = len(chosen) >= 2 and len(records) >= 2  # a covariance needs two samples (the smoke corpus has one test clip)
    frechet = {space: {kind: round(frechet_distance(np.stack(embeddings[kind][space]) / scale[space], reference[space] / scale[space]), 4)
                       if enough else None for kind in embeddings} for space in scale}
    mean_mcc = {k: mean(v) for k, v in mcc.items()}
    rounds = range(seeds)
    return {
        "judge": judged_by, "captions": len(chosen), "caption_set": "tuning" if tuning else "evaluation", "seeds_per_caption": seeds, "tempo_drafts": base.tempo_drafts, "fine_stage": base.fine_stage,
        "temperatures": list(base.temperatures), "coarse_guidance": base.coarse_guidance, "seconds": seconds, "reference_renders": len(records),
        "mcc": {**mean_mcc, "generated_over_reference": round(mean_mcc["generated"] / mean_mcc["reference"], 4),
                "codec_ceiling_over_reference": round(mean_mcc["reference_through_codec"] / mean_mcc["reference"], 4),
                "per_seed": {k: [mean(mcc[k], lambda r: r == n) for n in rounds] for k in drawn},
                "generated_over_reference_per_seed": [round(mean(mcc["generated"], lambda r: r == n) / mean_mcc["reference"], 4) for n in rounds]},
        "tempo": {"prompts_with_bpm": sum(r == 0 for r, _ in tempo["generated"]),
                  **{f"{k}_within_8pct": mean(v, score=within) if v else None for k, v in tempo.items()},
                  **{f"{k}_median_error": round(float(np.median([e for _, e in v])), 4) if v else None for k, v in tempo.items()},
                  "per_seed_within_8pct": {k: [mean(tempo[k], lambda r: r == n, within) for n in rounds] if tempo[k] else None
                                           for k in drawn}},
        "notes": {kind: {k: round(float(np.mean(v)), 4) for k, v in rows.items()} for kind, rows in clarity.items()},
        "contrast": _contrast(model, base, seeds),
        "fine_stage_log_mel_l1": _fine_stage_fidelity(model, corpus, records[:10], seconds),
        "frechet": frechet,
        "generation_rtf_mean": round(float(np.mean(rtf)), 4),
        "wall_s": round(time.perf_counter() - t0, 1),
    }



# ----------------------------------------------------------------------------- generation
FREE_FORM_PROMPTS = Path(__file__).resolve().parents[2] / "assets" / "eval" / "free-form-prompts.json"


def eval_free_form(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0, seeds: int = 3,
                   judge: Path | None = None, **settings) -> dict:
    """The held-out free-form prompts (``FREE_FORM_PROMPTS``: written as people write, unlike any
    caption template; never trained or tuned on): MCC over the reference MCC of the evaluation's
    test captions (free-form prompts have no render of their own), the stated tempo kept, the
    free-form contrast pairs each judged on the feature it names, Fréchet MuLan to the test renders."""
    t0 = time.perf_counter()
    held_out = json.loads(FREE_FORM_PROMPTS.read_text())
    prompts = held_out["prompts"][:clips] if clips else held_out["prompts"]
    base = GenerationSettings(seconds=seconds, **settings)
    base.check()
    model = MusicLM.load(checkpoint)
    mulan, judged_by = _judge(model, judge)
    records = read_records(corpus, "test")
    renders = np.stack([mulan.embed_frames(f).numpy() for f in _render_frames(corpus, records, seconds)])
    index = {r["id"]: i for i, r in enumerate(records)}
    template = _generation_set(records, EVALUATION_CAPTIONS)
    template_text = mulan.embed_text([r["caption"] for r in template]).numpy()
    reference_mcc = float(np.mean([t @ renders[index[r["id"]]] for t, r in zip(template_text, template)]))
    texts = mulan.embed_text(prompts).numpy()
    mcc, embeddings, tempo = [], [], []
    for round_ in range(seeds):
        for i, (prompt, text) in enumerate(zip(prompts, texts)):
            audio, _ = model.generate(prompt, replace(base, seed=round_ * len(prompts) + i))
            emb = mulan.embed_audio(audio).numpy()
            mcc.append(float(text @ emb))
            embeddings.append(emb)
            bpm = stated_bpm(prompt)
            if bpm:
                heard = estimated_bpm(audio)
                tempo.append({"prompt": prompt, "seed_round": round_, "stated": bpm, "heard": round(heard, 1), "error": round(tempo_error(heard, bpm), 4)})
    within = [t["error"] <= TEMPO_TOLERANCE for t in tempo]
    return {
        "judge": judged_by, "prompts": len(prompts), "seeds_per_prompt": seeds, "seconds": seconds, "prompts_with_bpm": len(tempo) // seeds,
        "mcc": {"generated": round(float(np.mean(mcc)), 4), "reference_of_template_captions": round(reference_mcc, 4),
                "generated_over_reference": round(float(np.mean(mcc)) / reference_mcc, 4)},
        "tempo": {"within_8pct": round(float(np.mean(within)), 4) if tempo else None,
                  "median_error": round(float(np.median([t["error"] for t in tempo])), 4) if tempo else None, "draws": tempo},
        "contrast": _contrast(model, base, seeds, [tuple(pair) for pair in held_out["contrast_pairs"]]),
        "frechet_mulan": round(frechet_distance(np.stack(embeddings), renders), 4) if min(len(embeddings), len(renders)) >= 2 else None,
        "targets": {"tempo_within_8pct": 0.75, "contrast_pairs": 4, "mcc_ratio": 0.7},
        "wall_s": round(time.perf_counter() - t0, 1),
    }


CONTRAST_PAIRS = (  # (A, B): B asks for more percussive, busier and brighter music than A
    ("tender solo piano, slow tempo, calm", "heavy metal with distorted guitar and powerful drums, fast tempo"),
    ("calm ambient music with a warm synth pad, slow tempo", "techno with an 808 drum machine and synth bass, fast tempo"),
    ("melancholic string quartet with violin and cello, slow tempo", "energetic rock with crunchy guitar and a drum kit, fast tempo"),
    ("peaceful folk with nylon-string guitar and flute, unhurried tempo", "chiptune with a square lead and electronic drums, quick tempo"),
    ("dreamy vocal pad, sparse texture, slow tempo", "high-energy house with a drum machine, fast tempo"),
)

