"""Processing algorithms of the ``loc2`` provider."""
