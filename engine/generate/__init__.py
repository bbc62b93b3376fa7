"""Generation: a request per mode (``requests``), its settings (``settings``), and the streamed
pipeline of the paper's Figure 2 (``musiclm``) with its upstream stage workers and tempo drafts."""
