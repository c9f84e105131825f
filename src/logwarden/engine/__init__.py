"""Engines that run the batch stages elsewhere than in this process.

``logwarden.engine.ray``: raw logs split by file and byte range, parsed on the workers of
a Ray cluster, sessions shuffled by id to the workers that own them and scored there
(``pip install logwarden[ray]``). Imported on demand: Ray is an optional dependency.
"""
