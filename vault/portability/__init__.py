"""Taking everything with you, or erasing everything: export, import into another vault, erasure.

Every package owns its rows, so every package contributes its part through one small interface
(:class:`~vault.portability.parts.DataPart`): "the sections of my data for individual X",
"import what I own from an export", "erase my rows for individual X". The vault core only
orchestrates; the composition root (:mod:`vrm.wiring`) says which parts there are.
"""
