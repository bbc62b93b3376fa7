// Plays each new chunk on the Web Audio clock right after the previous one. The first chunk of a
// stream starts LEAD s after it arrives; a chunk that arrives after the previous one has finished
// is a stall (recorded, then played LEAD s later). A new stream id silences the old stream.
// window.__hbPlayer holds the figures studio/first_sound.py reads: when the last click happened,
// when the first chunk's first sample reached the output (the Web Audio clock's output timestamp: playback advancing), and every
// stall, all on the page's performance.now() clock.
const LEAD = 0.05;
let context = null, stream = null, nextTime = 0, lastPlayed = 0, sources = [];
const audio = () => {
  if (!context) context = new (window.AudioContext || window.webkitAudioContext)({ sampleRate: 24000 });
  return context;
};
window.__hbPlayer = { clickedAt: null, firstSoundAt: null, stalls: [], chunks: 0, arrivals: [],
  remaining: () => (context && nextTime ? Math.max(0, nextTime - context.currentTime) : 0) };
document.addEventListener('pointerdown', () => { window.__hbPlayer.clickedAt = performance.now(); audio().resume(); }, { capture: true });

const samples = (base64) => {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const pcm = new Int16Array(bytes.buffer);
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
};

watch('value', () => {
  const value = props.value;
  if (!value || !value.stream) return;
  const ctx = audio();
  if (value.stream !== stream) {  // a new piece: silence the last one
    sources.forEach((s) => { try { s.stop(); } catch (e) { /* already ended */ } });
    sources = []; stream = value.stream; nextTime = 0; lastPlayed = 0;
    Object.assign(window.__hbPlayer, { stalls: [], chunks: 0, arrivals: [] });
  }
  for (const [sequence, data] of value.chunks) {
    if (sequence <= lastPlayed) continue;
    lastPlayed = sequence;
    window.__hbPlayer.arrivals.push(performance.now() - (window.__hbPlayer.clickedAt || 0));
    const pcm = samples(data);
    const buffer = ctx.createBuffer(1, pcm.length, value.rate);
    buffer.copyToChannel(pcm, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.onended = () => { sources = sources.filter((s) => s !== source); };
    const now = ctx.currentTime;
    if (nextTime === 0) {
      nextTime = now + LEAD;
      const start = nextTime, mine = stream;
      const watchStart = () => {  // the moment the clock is past the first chunk's start: playback advancing
        if (stream !== mine) return;
        if (ctx.currentTime > start) {  // when the first sample reached the output: the audio clock's own stamp, not this callback's
          const stamp = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : {};  // late whenever the page is busy drawing
          window.__hbPlayer.firstSoundAt = stamp.performanceTime ? stamp.performanceTime - (stamp.contextTime - start) * 1000 : performance.now();
        } else setTimeout(watchStart, 5);
      };
      watchStart();
    } else if (nextTime < now) {
      window.__hbPlayer.stalls.push(now - nextTime + LEAD);
      nextTime = now + LEAD;
    }
    source.start(nextTime);
    sources.push(source);
    nextTime += buffer.duration;
    window.__hbPlayer.chunks += 1;
  }
});
