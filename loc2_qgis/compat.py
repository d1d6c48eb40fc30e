"""The few places where QGIS 3.22 (Qt 5, PyQt5) and QGIS 4 (Qt 6, PyQt6) need different code, in one module.

Everything else in the plugin is written in the form both accept: fully scoped enums
(``Qt.AlignmentFlag.AlignLeft``), ``exec()``, imports through ``qgis.PyQt``. ``tests/test_qt6_clean.py``
keeps it that way.
"""

from __future__ import annotations

from qgis.core import Qgis
from qgis.PyQt.QtCore import QCoreApplication

try:  # Qt 6 moved QAction to QtGui
    from qgis.PyQt.QtGui import QAction  # noqa: F401
except ImportError:  # Qt 5
    from qgis.PyQt.QtWidgets import QAction  # noqa: F401

#: translation context of every user-facing string of the plugin
TR_CONTEXT = "Loc2"


def tr(text: str) -> str:
    """``text`` in the user's language when a translation is installed (none is shipped yet: the hook is here)."""
    return QCoreApplication.translate(TR_CONTEXT, text)


def field_type(name: str):
    """The type of a ``QgsField`` by name ("Int", "Double", "String", "LongLong", "Bool").

    QgsField takes a ``QVariant.Type`` up to QGIS 3.36 and a ``QMetaType.Type`` from 3.38 on; PyQt6 has no
    ``QVariant.Type`` at all, so the name is looked up on whichever the running QGIS expects.
    """
    if Qgis.QGIS_VERSION_INT >= 33800:
        from qgis.PyQt.QtCore import QMetaType

        return getattr(QMetaType.Type, name)
    from qgis.PyQt.QtCore import QVariant

    return getattr(QVariant, name)


def ogr_field_types() -> dict:
    """{OGR field type: QgsField type} for the three OGR types of the Loc² layers (``loc2_engine.gpkg.LAYERS``)."""
    from osgeo import ogr

    return {ogr.OFTInteger: field_type("Int"), ogr.OFTReal: field_type("Double"),
            ogr.OFTString: field_type("String")}
