"""``python -m engine bench …``: speed and memory as JSON (docs/ARCHITECTURE.md, Metrics), measured on this machine.

``bench codec`` times the shipped codec and, for the architecture choice, a SoundStream-style
waveform-domain decoder (transposed convolutions up to 24 kHz, residual units with dilations
1/3/9, as in SoundStream §3.1) with random weights: what it would cost to decode the same tokens.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.profiler import profile

from ..client import SERVER_SWITCH
from ..generate.musiclm import MusicLM
from ..generate.settings import GenerationSettings
from ..nn.codec import HOP, load_codec
from ..nn.lm import load_stage
from .codec import codec_speed


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        return x + self.proj(torch.nn.functional.elu(self.conv(torch.nn.functional.elu(x))))


def soundstream_decoder(latent_dim: int, base_channels: int, strides=(8, 5, 4, 3)) -> nn.Module:
    """SoundStream's decoder shape for a 480-sample hop: channels halve at each upsampling."""
    assert int(np.prod(strides)) == HOP
    channels = base_channels * 2 ** len(strides)
    layers: list[nn.Module] = [nn.Conv1d(latent_dim, channels, 7, padding=3)]
    for stride in strides:
        layers += [
            nn.ELU(),
            nn.ConvTranspose1d(channels, channels // 2, 2 * stride, stride=stride, padding=stride // 2 + stride % 2, output_padding=stride % 2),
            *(_ResidualUnit(channels // 2, d) for d in (1, 3, 9)),
        ]
        channels //= 2
    layers += [nn.ELU(), nn.Conv1d(channels, 1, 7, padding=3)]
    return nn.Sequential(*layers)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_codec(seconds: float = 10.0, repeats: int = 3) -> dict:
    model = load_codec()
    tokens = int(seconds * 24_000 / HOP)
    latents = torch.randn(1, model.cfg.latent_dim, tokens)
    ours_params = sum(p.numel() for p in model.decoder.parameters())
    result = {"ours": {**codec_speed(model, seconds, repeats), "decoder_params_m": round(ours_params / 1e6, 2)}}
    with torch.inference_mode():
        result["ours"]["decode_only_s"] = round(_median_time(lambda: model.decode_latents(latents), repeats), 4)
        for base in (16, 32):
            ref = soundstream_decoder(model.cfg.latent_dim, base).eval()
            wall = _median_time(lambda: ref(latents), repeats)
            result[f"soundstream_decoder_C{base}"] = {
                "decoder_params_m": round(sum(p.numel() for p in ref.parameters()) / 1e6, 2),
                "decode_only_s": round(wall, 4),
                "realtime_x": round(seconds / wall, 1),
            }
    result["threads"] = torch.get_num_threads()
    return result


def bench_generate(lengths: tuple[float, ...] = (10.0, 60.0, 300.0), prompt: str = "calm violin melody over a distorted guitar riff, 90 bpm",
                   seed: int = 0, parallel: bool | None = None, device: str = "cpu") -> dict:
    """Text → audio with the shipped checkpoints on ``device``: RTF, first-chunk latency,
    per-stage seconds and tokens/s, peak RSS (and peak GPU memory) — for each length, in this
    one process."""
    t0 = time.perf_counter()
    model = MusicLM.load(device=device, parallel=parallel)
    load_s = time.perf_counter() - t0
    model.generate(prompt, GenerationSettings(seconds=1.0, seed=seed))  # warm-up: first calls allocate
    runs = {}
    for seconds in lengths:
        _, info = model.generate(prompt, GenerationSettings(seconds=seconds, seed=seed))
        tokens = {"stage1": seconds * 25, "stage2": seconds * 50 * 4, "stage3": seconds * 50 * 8}
        info["tokens_per_s"] = {k: round(tokens[k] / info["stages"][k], 1) for k in tokens if info["stages"][k] > 0}  # stage 3 is off by default
        runs[f"{seconds:g}s"] = info
    rtfs = [runs[k]["rtf"] for k in runs]
    workers = model.upstream_workers() if model.parallel else ()
    memory = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if workers:  # shared pages (torch's libraries, the weights) count in every process's RSS; PSS splits them
        memory["upstream_peak_rss_mb"] = [round(w.peak_rss_mb, 1) for w in workers]
        memory["pss_all_processes_mb"] = round(sum(proportional_set_size_mb(pid) for pid in (None, *(w.process.pid for w in workers))), 1)
    return {"prompt": prompt, "load_s": round(load_s, 2), "runs": runs, "rtf_ratio_longest_to_shortest": round(rtfs[-1] / rtfs[0], 3),
            **memory, "threads": torch.get_num_threads(), "upstream_processes": len(workers), "device": model.device.type,
            **({"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if model.device.type == "cuda" else {})}


def proportional_set_size_mb(pid: int | None = None) -> float:
    """A process's resident memory with each shared page divided among the processes that map it
    (Linux ``smaps_rollup``; 0 where that is not available): summed over processes, the memory
    they really hold."""
    try:
        with open(f"/proc/{pid or 'self'}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def musicgen_small(seed: int = 0):
    """MusicGen-small's architecture (Copet et al. 2023) from its published configuration, with
    random weights: nothing is downloaded. T5-base text encoder, a 24-layer 1024-wide decoder over
    4 EnCodec codebooks of 2048 with the delay pattern, EnCodec 32 kHz."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config

    torch.manual_seed(seed)
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, upsampling_ratios=[8, 5, 4, 4], codebook_size=2048,
                          codebook_dim=128, hidden_size=128, num_lstm_layers=2, normalize=False, target_bandwidths=[2.2],
                          use_causal_conv=False, compress=2, norm_type="weight_norm", pad_mode="reflect", trim_right_ratio=1.0)
    decoder = MusicgenDecoderConfig(vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=24, ffn_dim=4096,
                                    num_attention_heads=16, hidden_size=1024, num_codebooks=4, audio_channels=1,
                                    activation_function="gelu", dropout=0.1, layerdrop=0.0, scale_embedding=False,
                                    pad_token_id=2048, bos_token_id=2048)
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    return MusicgenForConditionalGeneration(config).eval()


def bench_peer(seconds: float = 10.0, threads: int | None = None) -> dict:
    """Wall time of MusicGen-small's architecture generating ``seconds`` (sampling, guidance 3,
    KV cache, as its own generate() does) on ``threads`` threads (default: every core, as ours
    spreads its stages over processes), cold (building the model and the first generate, as a
    one-shot command pays) and warm (again, in the same process)."""
    threads = threads or os.cpu_count() or 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tokens = int(seconds * 50)  # EnCodec 32 kHz: 50 frames per second
        with torch.inference_mode():
            t0 = time.perf_counter()
            model = musicgen_small()
            input_ids = torch.randint(0, 32128, (1, 12))
            model.generate(input_ids=input_ids, max_new_tokens=tokens, do_sample=True, guidance_scale=3.0)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.generate(input_ids=input_ids, max_new_tokens=tokens, do_sample=True, guidance_scale=3.0)
            wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)
    params = sum(p.numel() for p in model.parameters())
    return {"model": "MusicGen-small architecture, random weights", "params_m": round(params / 1e6, 1), "seconds": seconds,
            "wall_s": round(wall, 2), "rtf": round(wall / seconds, 3), "cold_s": round(cold, 2), "threads": threads,
            "torch": torch.__version__}


CLI_PROMPTS = {"without a bpm": "calm violin melody over soft piano", "with a bpm": "calm violin melody over a distorted guitar riff, 90 bpm"}


def _command(prompt: str, seconds: float, folder: str, env: dict | None = None, in_process: bool = True) -> tuple[float, dict]:
    """``python -m engine generate`` in a fresh process: (wall seconds from launch to exit, its result)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engine", "generate", prompt, "--seconds", f"{seconds:g}", "--out", str(Path(folder) / "out.wav"),
                           "--json", *(["--in-process"] if in_process else [])], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise ValueError(f"generate failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return wall, json.loads(proc.stdout.splitlines()[-1])


def bench_cli(seconds: float = 10.0, prompt: str = CLI_PROMPTS["with a bpm"]) -> dict:
    """Ours as a user runs it: ``python -m engine generate`` in a fresh process, from launch to
    exit (imports, loading, the upstream processes, generation and the written file)."""
    with tempfile.TemporaryDirectory() as folder:
        wall, result = _command(prompt, seconds, folder)
    return {"seconds": seconds, "process_wall_s": round(wall, 2), "first_chunk_since_start_s": result["first_chunk_since_start_s"]}


def bench_commands(seconds: float = 10.0, repeats: int = 5) -> dict:
    """The wait at the prompt, as a user counts it (process start → first chunk, and to exit),
    for the prompts of ``CLI_PROMPTS``, ``repeats`` times each: one-shot commands that load the
    models themselves (``--in-process``); a script's commands back to back from a cold start, the
    first of which leaves a server behind it that the next wait for while it loads and warms up;
    then the same commands once that server is warm."""
    def runs(env: dict, in_process: bool, folder: str) -> dict:
        out = {}
        for name, prompt in CLI_PROMPTS.items():
            timed = [_command(prompt, seconds, folder, env, in_process) for _ in range(repeats)]
            if any(result["served"] == in_process for _, result in timed):
                raise ValueError("the server did not answer (or answered a one-shot command)")
            firsts, walls = [r["first_chunk_since_start_s"] for _, r in timed], [w for w, _ in timed]
            out[name] = {"first_chunk_since_start_s": [min(firsts), max(firsts)], "process_wall_s": [round(min(walls), 2), round(max(walls), 2)]}
        return out

    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "HUMMINGBIRD_SOCKET": str(Path(folder) / "engine.sock"), SERVER_SWITCH: "on"}
        result = {"seconds": seconds, "repeats": repeats, "one_shot": runs(env, True, folder)}
        try:
            prompts = [*CLI_PROMPTS.values()] * repeats
            sequence = [_command(prompt, seconds, folder, env, in_process=False) for prompt in prompts]
            if sequence[0][1]["served"] or not all(r["served"] for _, r in sequence[1:]):
                raise ValueError("the first command did not leave a server behind it for the next")
            result["back_to_back"] = {"prompts": list(CLI_PROMPTS), "first_chunk_since_start_s": [r["first_chunk_since_start_s"] for _, r in sequence],
                                      "process_wall_s": [round(w, 2) for w, _ in sequence]}
            result["served"] = runs(env, False, folder)
        finally:
            subprocess.run([sys.executable, "-m", "engine", "serve", "--stop"], env=env, capture_output=True, timeout=60)
    return result


def bench_stage_steps(frames: int = 200, top_ops: int = 6, seed: int = 0) -> dict:
    """Each shipped stage LM alone on one thread: milliseconds to decode one frame (every level,
    guidance as in generation) and the operators that take the time — the profile the decode
    loop is tuned against. Inputs are random tokens: speed does not depend on their values."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = {}
    try:
        for name in ("stage1", "stage2", "stage3"):
            model = load_stage(name).eval()
            lay = model.cfg.layout
            generator = torch.Generator().manual_seed(seed)
            aligned = {s.name: torch.randint(0, s.vocab, (1, s.levels, 2 * frames + 80), generator=generator) for s in lay.aligned}
            prefix = torch.randint(0, lay.prefix.vocab, (1, lay.prefix.levels), generator=generator) if lay.prefix else None
            profiled = min(frames, 50)
            steps = model.stream(20 + frames + profiled, prefix, aligned, generator=generator)
            for _ in range(20):  # warm-up: caches and buffers grow to size
                next(steps)
            t0 = time.perf_counter()
            for _ in range(frames):
                next(steps)
            ms = (time.perf_counter() - t0) / frames * 1000
            with profile() as prof:
                for _ in range(profiled):
                    next(steps)
            ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top_ops]
            total = sum(e.self_cpu_time_total for e in prof.key_averages())
            result[name] = {"ms_per_frame": round(ms, 3), "levels": lay.target.levels, "guided": lay.sampling.guidance != 1.0,
                            "top_ops": [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls_per_frame": e.count / profiled}
                                        for e in ops]}
    finally:
        torch.set_num_threads(threads)
    return {"frames": frames, "threads": 1, **result}
