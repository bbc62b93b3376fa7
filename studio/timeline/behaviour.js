// The story timeline: drag a block to reorder, drag its right edge to resize (snapped), × removes,
// + adds. Every change is sent to Python as an "input" event with the new story JSON.
const SNAP = 0.5, SHORTEST = 0.5, LONGEST = 300;
const snap = (seconds) => Math.min(LONGEST, Math.max(SHORTEST, Math.round(seconds / SNAP) * SNAP));
const segments = () => props.value.segments.map((s) => ({ ...s }));
const commit = (next) => { props.value = { segments: next }; trigger('input'); };
let drag = null;

element.addEventListener('click', (event) => {
  const remove = event.target.closest('.remove');
  if (remove) {
    const next = segments();
    next.splice(Number(remove.dataset.index), 1);
    commit(next);
  } else if (event.target.closest('.add')) {
    commit([...segments(), { prompt: 'describe this part', seconds: 10 }]);
  }
});

element.addEventListener('pointerdown', (event) => {
  const block = event.target.closest('.segment');
  if (!block || event.target.closest('.remove')) return;
  const index = Number(block.dataset.index);
  const seconds = props.value.segments[index].seconds;
  drag = { index, x: event.clientX, seconds, resize: Boolean(event.target.closest('.edge')), moved: false };
  block.classList.add('dragging');
  event.preventDefault();
});

window.addEventListener('pointermove', (event) => {
  if (!drag) return;
  drag.moved = true;
  if (drag.resize) {  // live: the block follows the pointer in 0.5 s steps
    const next = segments();
    const stretched = snap(drag.seconds + (event.clientX - drag.x) / props.px_per_second);
    if (stretched !== next[drag.index].seconds) {
      next[drag.index].seconds = stretched;
      props.value = { segments: next };
    }
  }
});

window.addEventListener('pointerup', (event) => {
  if (!drag) return;
  const { index, resize, moved } = drag;
  drag = null;
  element.querySelectorAll('.segment.dragging').forEach((b) => b.classList.remove('dragging'));
  if (!moved) return;
  if (resize) { trigger('input'); return; }
  const blocks = [...element.querySelectorAll('.segment')];  // drop before the first block whose centre is right of the pointer
  let target = blocks.findIndex((b) => { const r = b.getBoundingClientRect(); return event.clientX < r.left + r.width / 2; });
  if (target === -1) target = blocks.length;
  const next = segments();
  const [moving] = next.splice(index, 1);
  next.splice(target > index ? target - 1 : target, 0, moving);
  if (target !== index && target !== index + 1) commit(next);
});
