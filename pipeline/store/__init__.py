"""On-disk state: run folders and their one owner (:class:`~pipeline.store.run_store.RunStore`),
atomic and sealed (self-checking) files, cross-process locks, and clear errors for unusable folders.
"""
