"""``python -m engine eval all``: every quality metric of docs/ARCHITECTURE.md (Metrics) in one run, written as JSON
and as a markdown report with plots (docs/RESULTS.md), stamped with the git commit and the
checkpoint hashes and appended to a history file, so results can be followed over time.

A plan sizes each evaluation: ``quick`` fits the whole run in a quarter of an hour on a 2-core CPU
(14 minutes measured on 2026-12-07; fewer captions, clips and seconds than each command's own default, never fewer seeds); ``full``
uses those defaults.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints import model_set
from ..integrity import file_sha256, manifest_files
from ..files import atomic_write
from . import EVALUATORS

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ReportPlan:
    """Keyword arguments for each evaluation (beyond the corpus and the checkpoints)."""
    name: str
    sizes: dict[str, dict] = field(default_factory=dict)


PLANS = {
    # quick: fewer clips, never fewer seeds: the contrast target is defined over 3 seeds, and one
    # draw per caption leaves MCC and tempo at the mercy of the seed (docs/experiments.md, three seeds per caption)
    "quick": ReportPlan("quick", {
        "codec": {"clips": 20}, "tones": {}, "recordings": {"clips": 12}, "mulan": {},
        "semantic": {"clips": 100, "probe_train_clips": 200}, "stages": {},
        "generation": {"clips": 10, "seconds": 10.0, "seeds": 3}, "story": {"clips": 3, "seconds": 8.0},
        "continuation": {"clips": 10, "seconds": 10.0}, "melody": {"clips": 8, "seconds": 10.0}, "memorization": {"clips": 100},
        "style": {"clips": 10, "seconds": 10.0}, "dynamics": {"clips": 5, "seconds": 8.0, "seeds": 3},
    }),
    "full": ReportPlan("full", {name: {} for name in
                               ("codec", "tones", "recordings", "mulan", "semantic", "stages", "generation", "story", "continuation",
                                "melody", "memorization", "style", "dynamics")}),
}
@dataclass(frozen=True)
class Target:
    """One "done when" figure of the issues: where it sits in the results and the bar it must clear."""
    label: str
    path: str  # dotted path into the results
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None

    def value(self, results: dict):
        node = results
        for key in self.path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def met(self, value) -> bool | None:
        if not isinstance(value, (int, float)):
            return None
        return ((self.at_least is None or value >= self.at_least) and (self.below is None or value < self.below)
                and (self.at_most is None or value <= self.at_most))

    @property
    def bar(self) -> str:
        if self.at_least is not None:
            return f"≥ {self.at_least:g}"
        return f"< {self.below:g}" if self.below is not None else f"≤ {self.at_most:g}"


TARGETS = [
    Target("codec: test music keeps its pitch class", "codec.codec.12.pitch_class_agreement", at_least=0.7),
    Target("codec: test music's log-mel L1 / Opus's", "codec.log_mel_l1_ratio_vs_opus", at_most=0.5),
    Target("codec: test music's 50 Hz comb share minus Opus's (mean over clips)", "codec.comb_over_opus.mean", at_most=0.0),
    Target("codec: encode + decode of 10 s (s)", "codec.speed.encode_decode_s", at_most=0.3),
    Target("codec: sines 80–1000 Hz back within a quarter tone", "tones.codec.sines_within_quarter_tone", at_least=0.99),
    Target("codec: … and at their level (within 6 dB)", "tones.codec.sines_in_tune_and_level", at_least=0.99),
    Target("codec: harmonic tones keep their pitch class", "tones.codec.harmonic_pitch_class_agreement", at_least=0.7),
    Target("codec: harmonic tones' energy on the 50 Hz comb", "tones.codec.harmonic_comb_share", below=0.15),
    Target("codec: recorded music keeps its pitch class", "recordings.codec.pitch_class_agreement", at_least=0.7),
    Target("MuLan text→audio recall@10", "mulan.text_to_audio.recall@10", at_least=0.6),
    Target("MuLan zero-shot genre accuracy", "mulan.zero_shot_genre.accuracy", at_least=0.6),
    Target("MuLan RVQ reconstruction cosine (audio)", "mulan.rvq_cosine.audio_clip", at_least=0.9),
    Target("semantic tokens beat the baseline (probes of 4)", "semantic.probes_won", at_least=3),
    Target("semantic code perplexity / vocabulary", "semantic.semantic_codes.perplexity_fraction", at_least=0.3),
    Target("semantic tokenizing 10 s (s)", "semantic.tokenize_10s_s", below=0.3),
    Target("generated MCC / reference MCC", "generation.mcc.generated_over_reference", at_least=0.7),
    Target("tempo within 8 % (prompts with a bpm)", "generation.tempo.generated_within_8pct", at_least=0.6),
    Target("contrasting pairs moved (of 5)", "generation.contrast.pairs_moved", at_least=4),
    Target("story segments with a positive MuLan margin", "story.margin_positive_fraction", at_least=0.8),
    Target("story segments that keep their own stated tempo", "story.tempo.within_8pct", at_least=0.75),
    Target("continuations closer to their own clip", "continuation.closer_to_own_clip_fraction", at_least=0.8),
    Target("hum chroma cosine (renditions)", "melody.rendition.chroma_cosine", at_least=0.55),
    Target("hum chroma cosine / shuffled hum (renditions)", "melody.rendition.ratio_to_shuffled", at_least=2.0),
    Target("exact-match memorization", "memorization.exact_match_rate", below=0.01),
    Target("style: closest to its own reference clip (MuLan)", "style.closest_to_own_reference.mulan", at_least=0.8),
    Target("style: exact copies of the reference's tokens", "style.exact_match_rate", below=0.01),
    Target("dynamics: the loud prompt of a pair comes out louder", "dynamics.loud_louder_fraction", at_least=0.9),
    Target("dynamics: stories whose loud middle has ≥ 1.5 × its quiet neighbours' RMS", "dynamics.story_swell_fraction", at_least=0.75),
]


def _weight_files(checkpoint: Path | None) -> list[tuple[str, Path]]:
    """(label, file) for every weight file of the set: an exported model's shards by name, a run
    folder's weights as ``<model>/model.safetensors``."""
    files = []
    for path in model_set(checkpoint).values():
        if path.is_file():
            files += [(f.name, f) for f in manifest_files(path) or [path] if f.suffix == ".safetensors"]
        else:
            files.append((f"{path.name}/model.safetensors", path / "model.safetensors"))
    return files


def provenance(checkpoint: Path | None) -> dict:
    """The git commit (and whether the tree had changes) and the SHA-256 of every model of the set
    judged (``checkpoints.model_set``: the shipped ones without ``checkpoint``)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "checkpoints": {label: file_sha256(f) for label, f in _weight_files(checkpoint)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


ONE_MODEL = {"codec": "codec", "tones": "codec", "recordings": "codec", "mulan": "mulan", "semantic": "semantic"}  # evaluations of one model


def run_all(corpus: Path, checkpoint: Path | None = None, plan: str = "quick", only: tuple[str, ...] = (), progress=print) -> dict:
    """Every evaluation of the plan (or ``only`` some); one that fails is recorded with its error
    and the rest still run."""
    chosen = PLANS[plan]
    results: dict = {"plan": chosen.name, "sizes": chosen.sizes, **provenance(checkpoint)}
    t0 = time.perf_counter()
    models = model_set(checkpoint)
    for name, kwargs in chosen.sizes.items():
        if only and name not in only:
            continue
        # an evaluation of one model is given that model of the set; the rest take the set's folder
        judged = models[ONE_MODEL[name]] if checkpoint and name in ONE_MODEL else checkpoint
        progress(f"eval {name} {kwargs or ''}")
        start = time.perf_counter()
        try:
            results[name] = EVALUATORS[name](corpus, judged, **kwargs)
        except Exception as exc:  # one broken evaluation must not cost the others' results
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["eval_wall_s"] = round(time.perf_counter() - start, 1)
    if "semantic" in results and "probes" in results["semantic"]:
        probes = results["semantic"]["probes"]
        results["semantic"]["probes_won"] = sum(p["semantic_tokens"] > p["baseline_tokens"] for p in probes.values())
    results["targets"] = [{"label": t.label, "bar": t.bar, "value": t.value(results), "met": t.met(t.value(results))} for t in TARGETS]
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    return results


def write_report(results: dict, out: Path) -> Path:
    """results.json, RESULTS.md and its plots under ``out``; one line appended to results-history.jsonl."""
    out = Path(out)
    images = out / "results"
    images.mkdir(parents=True, exist_ok=True)
    _write_text(out / "results.json", json.dumps(results, indent=1))
    plots = {name: draw(results[name], images / f"{name}.png") for name, draw in PLOTS.items()
             if isinstance(results.get(name), dict) and "error" not in results[name]}
    _write_text(out / "RESULTS.md", markdown(results, {k: f"results/{v.name}" for k, v in plots.items() if v}))
    headline = {"commit": results["commit"], "created": results["created"], "plan": results["plan"],
                **{t["label"]: t["value"] for t in results["targets"]}}
    with open(out / "results-history.jsonl", "a", encoding="utf-8") as history:
        history.write(json.dumps(headline) + "\n")
    return out / "RESULTS.md"


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------------------------- markdown
def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in d.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        elif not isinstance(value, list):
            rows.append((prefix + key, value))
        elif len(value) == 2 and all(isinstance(v, (int, float)) for v in value):  # a range or an interval; longer lists are plots' data
            rows.append((prefix + key, f"{value[0]:g} to {value[1]:g}"))
    return rows


def markdown(results: dict, plots: dict[str, str]) -> str:
    met = [t for t in results["targets"] if t["met"]]
    lines = [
        "# Results", "",
        f"Written by `python -m engine eval all --plan {results['plan']}` on {results['created']} at commit "
        f"`{results['commit'][:12]}`{' (with uncommitted changes)' if results['dirty'] else ''}; the whole run took "
        f"{results['wall_s'] / 60:.1f} min. Every figure below is in `results.json`; each run adds a line to "
        "`results-history.jsonl`. Sizes per evaluation (the `quick` plan uses fewer clips and seconds than each "
        f"command's default): `{json.dumps(results['sizes'])}`.", "",
        f"## Targets: {len(met)} of {len(results['targets'])} met", "",
        "| figure | target | measured | |", "|---|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['label']} | {t['bar']} | {_fmt(t['value'])} | {'✅' if t['met'] else '❌' if t['met'] is False else '—'} |")
    for name in EVALUATORS:
        section = results.get(name)
        if not isinstance(section, dict):
            continue
        lines += ["", f"## {name}", "", f"`python -m engine eval {name} --json` · {section.get('eval_wall_s', '?')} s", ""]
        if "error" in section:
            lines.append(f"**failed:** {section['error']}")
            continue
        if name in plots:
            lines += [f"![{name}]({plots[name]})", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in _flat(section) if key != "eval_wall_s"]
    lines += ["", "## Checkpoints (SHA-256)", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| {name} | `{digest[:16]}…` |" for name, digest in results["checkpoints"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- plots
def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.grid(axis="y", alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> Path:
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _bars(groups: dict[str, dict[str, float]], title: str, ylabel: str, path: Path, line: float | None = None) -> Path:
    """Grouped bars: one group per key of ``groups``, one bar per series inside it, each series
    in the same colour in every group and each group's bars centred on its label."""
    plt, fig, ax = _figure()
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    for i, group in enumerate(groups.values()):
        width = 0.8 / max(len(group), 3)
        for j, (name, value) in enumerate(group.items()):
            k = series.index(name)
            ax.bar(i + width * (j + 0.5 - len(group) / 2), value, width, color=f"C{k}", label=name if name not in ax.get_legend_handles_labels()[1] else None)
    if line is not None:
        ax.axhline(line, color="k", ls="--", lw=1, label=f"target {line:g}")
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    return _save(plt, fig, ax, path)


def _plot_codec(r: dict, path: Path) -> Path:
    plt, fig, ax = _figure()
    levels = sorted(r["codec"], key=int)
    ax.plot([int(q) for q in levels], [r["codec"][q]["log_mel_l1"] for q in levels], "o-", label="codec, first q levels")
    for name, row in r["opus"].items():
        ax.axhline(row["log_mel_l1"], ls="--", color="C1", label=f"Opus {name}")
    ax.set(title="codec: log-mel L1 by RVQ levels (0.5 kbps each)", xlabel="levels", ylabel="log-mel L1 (lower is better)")
    return _save(plt, fig, ax, path)


def _plot_mulan(r: dict, path: Path) -> Path:
    groups = {"recall@1": {"MuLan": r["text_to_audio"]["recall@1"]}, "recall@10": {"MuLan": r["text_to_audio"]["recall@10"],
                                                                                 "chance": r["text_to_audio"]["chance@10"]}}
    for task in ("genre", "mood", "lead_instrument"):
        z = r[f"zero_shot_{task}"]
        groups[task] = {"MuLan": z["accuracy"], "chance": z["chance"]}
    return _bars(groups, "MuLan: retrieval and zero-shot accuracy (test split)", "fraction", path, 0.6)


def _plot_semantic(r: dict, path: Path) -> Path:
    return _bars({name: {k: v for k, v in p.items()} for name, p in r["probes"].items()},
                 "semantic tokens: linear-probe accuracy", "accuracy", path)


def _plot_stages(r: dict, path: Path) -> Path:
    groups = {stage: {k: v for k, v in r[stage].items() if isinstance(v, float)} for stage in ("stage1", "stage2", "stage3") if stage in r}
    return _bars(groups, "held-out cross-entropy by conditioning (lower is better)", "nats / token", path)


def _plot_generation(r: dict, path: Path) -> Path:
    kinds = ("generated", "true_semantic", "unconditional", "reference", "reference_through_codec")
    groups = {"MCC": {k: r["mcc"][k] for k in kinds if k in r["mcc"]},
              "tempo within 8 %": {k: r["tempo"][f"{k}_within_8pct"] for k in kinds if r["tempo"].get(f"{k}_within_8pct") is not None},
              "contrast pairs / 5": {"generated": r["contrast"]["pairs_moved"] / r["contrast"]["of"]}}
    return _bars(groups, "text adherence: generated vs unconditional vs reference renders", "score", path)


def _plot_story(r: dict, path: Path) -> Path:
    groups = {"margin > 0": {"story": r["margin_positive_fraction"], "independent clips": r["independent_clips_margin_positive_fraction"]},
              "seam jump / 4": {"story": r["seam_jump_story_median"] / 4, "independent clips": r["seam_jump_hard_cut_median"] / 4}}
    return _bars(groups, "story: segments that match their own prompt, and seams", "fraction", path, 0.8)


def _plot_continuation(r: dict, path: Path) -> Path:
    groups = {"MuLan similarity": {"own clip": r["similarity_own_mean"], "unrelated clip": r["similarity_unrelated_mean"]},
              "closer to own clip": {"own clip": r["closer_to_own_clip_fraction"]}}
    return _bars(groups, "continuation: similarity to its own prompt clip", "score", path, 0.8)


def _plot_melody(r: dict, path: Path) -> Path:
    keys = ("chroma_cosine", "shuffled", "text_only", "reference_render", "reference_through_codec")
    groups = {kind: {k: r[kind][k] for k in keys} for kind in ("rendition", "synthetic")}
    return _bars(groups, "hum → music: chroma cosine between hum and output", "cosine", path, 0.55)


def _plot_memorization(r: dict, path: Path) -> Path:
    plt, fig, ax = _figure()
    ax.hist(r["own_distances"], bins=30, alpha=0.7, label="continuation vs its training target")
    ax.axvline(r["threshold"], color="k", ls="--", lw=1, label=f"approximate-match threshold {r['threshold']:.3f}")
    ax.axvline(r["unrelated_distance_median"], color="C3", ls=":", lw=1, label="median over permuted pairs")
    ax.set(title="memorization: OT distance of greedy stage-1 continuations", xlabel="distance", ylabel="clips")
    return _save(plt, fig, ax, path)


PLOTS = {"codec": _plot_codec, "mulan": _plot_mulan, "semantic": _plot_semantic, "stages": _plot_stages,
         "generation": _plot_generation, "story": _plot_story, "continuation": _plot_continuation, "melody": _plot_melody,
         "memorization": _plot_memorization}
