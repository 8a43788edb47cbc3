"""On-disk state: run folders and their one owner (:class:`~pipeline.store.run_store.RunStore`),
atomic and sealed (self-checking) files, cross-process locks, a run's derived results computed once
(:mod:`~pipeline.store.derived`: keyed, sealed, locked), and clear errors for unusable folders.
"""
