"""Expected failures of the engine, each with a short machine code and a sentence a surveyor can act on.

Anything that raises one of these is recorded as a `failed` result with `error = str(exc)`; anything else
is a bug and is allowed to surface as a traceback.
"""


class Loc2Error(Exception):
    """Base of every expected failure; ``code`` is a short slug, ``str(exc)`` a full sentence."""

    code = "error"


class PhotoError(Loc2Error):
    """The photo cannot be read: missing, empty, truncated, or not an image."""

    code = "photo"


class CameraError(Loc2Error):
    """The camera model cannot be set up: no field of view, or a panorama that is not 2:1."""

    code = "camera"


class PriorError(Loc2Error):
    """No usable prior position: no EXIF GPS and none given, or a prior in an unusable CRS."""

    code = "prior"


class AerialError(Loc2Error):
    """The aerial raster cannot be used here: unreadable, no overlap with the prior, or all nodata."""

    code = "aerial"


class ManifestError(Loc2Error):
    """The manifest file cannot be used: missing, no header, or a row with a bad value (named by line)."""

    code = "manifest"


class ModelError(Loc2Error):
    """Model weights missing, mismatched, or unsafe to load."""

    code = "model"


class DepthError(Loc2Error):
    """The depth provider cannot produce a depth map for this photo."""

    code = "depth"


class OutputError(Loc2Error):
    """The GeoPackage cannot be created, opened or written."""

    code = "output"


class LocalizationError(Loc2Error):
    """The pose cannot be estimated: no usable matches, all sky, or no consistent hypothesis."""

    code = "localization"
