"""The web demo (``imagic-kit demo``, ``python -m imagic_kit.demo``): see :mod:`imagic_kit.demo.app`.

Importing this package does not import gradio; :mod:`imagic_kit.demo.app` does.
"""
