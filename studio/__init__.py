"""The hummingbird studio: a Gradio app that talks to ``engine`` only through its public API."""
