// gradio's Plot mounts a fresh plotly chart for every new figure and drops the old one without
// Plotly.purge, whose window resize listener then keeps the old chart and its data alive: a page
// grew by about 3 MB with every piece it previewed, and each later click came to sound later
// (0.4 s → 0.6–0.9 s after 14 pieces). Purge each chart as it leaves the page.
new MutationObserver((mutations) => {
  if (!window.Plotly) return;  // no chart drawn yet
  for (const mutation of mutations) {
    for (const node of mutation.removedNodes) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const charts = node.classList.contains('js-plotly-plot') ? [node] : node.querySelectorAll('.js-plotly-plot');
      charts.forEach((chart) => window.Plotly.purge(chart));
    }
  }
}).observe(document.body, { childList: true, subtree: true });
