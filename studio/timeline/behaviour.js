// The story timeline: blocks share the width in proportion to their seconds. Drag a block to move
// it (it follows the pointer; a red bar shows where it will land), drag its right handle to change
// its length (0.5 s steps, shown live), × removes, + adds. Every change is sent to Python as an
// "input" event with the new story JSON.
const SNAP = 0.5, SHORTEST = 0.5, LONGEST = 300;
const snap = (seconds) => Math.min(LONGEST, Math.max(SHORTEST, Math.round(seconds / SNAP) * SNAP));
const segments = () => props.value.segments.map((s) => ({ ...s }));
const commit = (next) => { props.value = { segments: next }; trigger('input'); };
const blocks = () => [...element.querySelectorAll('.segment')];
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

// where a block dropped at clientX lands: before the first block whose centre is right of it
const landing = (clientX) => {
  const index = blocks().findIndex((b) => { const r = b.getBoundingClientRect(); return clientX < r.left + r.width / 2; });
  return index === -1 ? blocks().length : index;
};

const showLanding = (target) => {
  blocks().forEach((b, i) => {
    b.classList.toggle('drop-before', i === target && i !== drag.index && i !== drag.index + 1);
    b.classList.toggle('drop-after', target === blocks().length && i === blocks().length - 1 && i !== drag.index);
  });
};

element.addEventListener('pointerdown', (event) => {
  const block = event.target.closest('.segment');
  if (!block || event.target.closest('.remove')) return;
  const track = element.querySelector('.track').getBoundingClientRect();
  const total = props.value.segments.reduce((t, s) => t + s.seconds, 0);
  const index = Number(block.dataset.index);
  drag = { index, x: event.clientX, seconds: props.value.segments[index].seconds, pxPerSecond: track.width / Math.max(total, 1e-9),
           resize: Boolean(event.target.closest('.edge')), moved: false };
  block.classList.add(drag.resize ? 'resizing' : 'dragging');
  event.preventDefault();
});

window.addEventListener('pointermove', (event) => {
  if (!drag) return;
  drag.moved = true;
  if (drag.resize) {  // the length follows the pointer at the scale the drag began with
    const stretched = snap(drag.seconds + (event.clientX - drag.x) / drag.pxPerSecond);
    if (stretched !== props.value.segments[drag.index].seconds) {
      const next = segments();
      next[drag.index].seconds = stretched;
      props.value = { segments: next };
      const block = blocks()[drag.index];
      if (block) block.classList.add('resizing');
    }
  } else {
    const block = blocks()[drag.index];
    if (block) block.style.transform = `translateX(${event.clientX - drag.x}px)`;
    showLanding(landing(event.clientX));
  }
});

window.addEventListener('pointerup', (event) => {
  if (!drag) return;
  const { index, resize, moved } = drag;
  blocks().forEach((b) => { b.classList.remove('dragging', 'resizing', 'drop-before', 'drop-after'); b.style.transform = ''; });
  drag = null;
  if (!moved) return;
  if (resize) { trigger('input'); return; }
  const target = landing(event.clientX);
  const next = segments();
  const [moving] = next.splice(index, 1);
  next.splice(target > index ? target - 1 : target, 0, moving);
  if (target !== index && target !== index + 1) commit(next);
});
