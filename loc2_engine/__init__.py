"""Loc² engine: cross-view localization of ground photos against aerial imagery (no Qt, no QGIS)."""

__version__ = "0.1.0"
