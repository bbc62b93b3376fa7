// A number typed past a slider's bound is clamped by the page without a word; say so under it.
document.addEventListener('input', (event) => {
  const box = event.target.closest('#duration input[type=number]');
  const note = document.querySelector('#duration-note');
  if (!box || !note) return;
  const value = Number(box.value), low = Number(box.min), high = Number(box.max);
  note.textContent = value > high ? `${value} s is longer than the longest piece: it is set to ${high} s`
    : value < low ? `${value} s is shorter than the shortest piece: it is set to ${low} s` : '';
}, true);
