"""The defaults a user sees, in one place: the CLI, the QGIS dock, the Processing algorithm, the plugin's
stored settings and the engine all read them from here (pure Python, no torch, so the plugin can import it
before the engine's dependencies are installed).
"""

#: search radius around the prior when none is given, metres (a consumer GPS fix in a street canyon)
RADIUS_M = 25.0
#: half-width of the allowed heading interval when a heading prior comes without one, degrees
HEADING_TOLERANCE_DEG = 20.0
#: camera height above the ground, metres (hand-held or tripod; a car roof is about 2.5 m)
CAMERA_HEIGHT_M = 1.6
#: how the photo's camera is modelled when the user does not say: from its size and EXIF
CAMERA = "auto"
#: registry name of the matcher used when none is named
MODEL = "default"
#: a capture is split where consecutive photos are more than this many seconds apart (docs/sequences.md)
MAX_GAP_S = 30.0
#: ... or where their prior positions are more than this many metres apart
MAX_GAP_M = 50.0
