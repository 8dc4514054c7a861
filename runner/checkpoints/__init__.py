"""Checkpoints: finding the files a run saves and reading them safely.

``found`` (files a script saved by itself, wherever its config points), ``forms`` (what a
checkpoint looks like: names, paths named in output, whether a file is whole) and ``inspection`` (a
summary of one checkpoint, loaded with ``weights_only=True`` only). Kept empty: importing
the package must not import torch.
"""
