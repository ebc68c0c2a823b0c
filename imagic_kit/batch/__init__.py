"""Batch editing (``imagic-kit batch``, ``scripts/batch_edit.py``): a manifest of edits run on one
process or many (``accelerate launch``). See :mod:`imagic_kit.batch.manifest` and
:mod:`imagic_kit.batch.runner`."""
