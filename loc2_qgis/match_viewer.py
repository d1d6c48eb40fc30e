"""Match viewer: the photo and the aerial window side by side, the matches drawn between them, the ground layout on
the aerial window, all from the same `Result` the layers come from (QPainter on QImages, no matplotlib).

Positions: ``uv_ground`` are photo pixels as loaded with EXIF orientation applied (Qt's auto-transform
does the same); aerial positions are local-frame metres mapped to window pixels with
``AerialWindow.local_to_pixel`` (pixel centre = integer (row, col), hence the +0.5 to reach image
coordinates).
"""

from __future__ import annotations

import numpy as np
from qgis.PyQt.QtCore import QLineF, QPointF, QRectF, Qt
from qgis.PyQt.QtGui import QColor, QGuiApplication, QImage, QImageReader, QPainter, QPen, QPixmap
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDialog, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout

from .compat import tr

PANEL_HEIGHT = 512
GAP = 12
#: residual that maps to full red, metres (a little above RANSAC's 2.5 m inlier threshold)
RESIDUAL_RED_M = 3.0
#: weight ramp, low to high (pale yellow, orange, red): bright, so that lines read on dark photos and imagery
WEIGHT_STOPS = ((0.0, (255, 250, 150)), (0.5, (255, 165, 30)), (1.0, (240, 40, 40)))
#: share of the screen's available area the viewer opens at, at most
SCREEN_SHARE = 0.9


def ramp(t: float, stops=WEIGHT_STOPS) -> QColor:
    """Colour at t in [0, 1] on a piecewise-linear ramp."""
    t = min(max(float(t), 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return QColor(*(int(round(a + (b - a) * f)) for a, b in zip(c0, c1)))
    return QColor(*stops[-1][1])


def residual_colour(residual_m: float) -> QColor:
    """Green (0 m) through yellow to red (>= RESIDUAL_RED_M)."""
    t = min(max(residual_m / RESIDUAL_RED_M, 0.0), 1.0) if np.isfinite(residual_m) else 1.0
    return ramp(t, ((0.0, (40, 200, 60)), (0.5, (250, 220, 40)), (1.0, (220, 40, 30))))


def load_photo(path: str) -> QImage:
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    return reader.read()


def window_image(window) -> QImage:
    """QImage copy of the window's (H, W, 3) uint8 image."""
    rgb = np.ascontiguousarray(window.image)
    h, w = rgb.shape[:2]
    return QImage(rgb.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def compose(result, colour_by: str = "weight", show_outliers: bool = False, photo: QImage = None) -> QImage:
    """The viewer picture: photo (left) and aerial window (right), both PANEL_HEIGHT tall.

    colour_by: "weight" (match probability, normalised to the largest) or "residual" (metres).
    Inlier lines are opaque; outliers (when shown) thin and faint. The ground layout is drawn as small
    white dots on the aerial window, the camera as a red dot with a heading tick.
    """
    photo = photo if photo is not None else load_photo(result.photo)
    aerial = window_image(result.window)
    sp = PANEL_HEIGHT / photo.height()
    sa = PANEL_HEIGHT / aerial.height()
    pw = int(round(photo.width() * sp))
    ax0 = pw + GAP
    out = QImage(ax0 + int(round(aerial.width() * sa)), PANEL_HEIGHT, QImage.Format.Format_RGB32)
    out.fill(QColor(255, 255, 255))
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    painter.drawImage(QRectF(0, 0, pw, PANEL_HEIGHT), photo)
    painter.drawImage(QRectF(ax0, 0, aerial.width() * sa, PANEL_HEIGHT), aerial)

    def aerial_xy(xy_local):
        rc = result.window.local_to_pixel(np.asarray(xy_local, np.float64).reshape(-1, 2))
        return np.stack([ax0 + (rc[:, 1] + 0.5) * sa, (rc[:, 0] + 0.5) * sa], axis=1)

    layout = aerial_xy(result.layout_xy)
    painter.setPen(QPen(QColor(0, 0, 0, 160), 1))
    painter.setBrush(QColor(255, 255, 255, 200))
    for x, y in layout:
        painter.drawEllipse(QPointF(x, y), 2.0, 2.0)

    uv = np.asarray(result.uv_ground, np.float64).reshape(-1, 2) * sp
    ends = aerial_xy(result.xy_aerial)
    weights = np.asarray(result.weights, np.float64).reshape(-1)
    wmax = weights.max() if len(weights) and weights.max() > 0 else 1.0
    residuals = np.asarray(result.residuals_m, np.float64).reshape(-1)
    inliers = np.asarray(result.inlier_mask, bool).reshape(-1)
    order = np.argsort(inliers, kind="stable")  # outliers first, inliers drawn on top
    for i in order:
        if not inliers[i] and not show_outliers:
            continue
        colour = ramp(weights[i] / wmax) if colour_by == "weight" else residual_colour(residuals[i])
        line = QLineF(uv[i, 0], uv[i, 1], ends[i, 0], ends[i, 1])
        if inliers[i]:  # a dark halo keeps the line visible on any imagery
            painter.setPen(QPen(QColor(0, 0, 0, 110), 3.2))
            painter.drawLine(line)
        else:
            colour.setAlpha(70)
        painter.setPen(QPen(colour, 1.6 if inliers[i] else 0.8))
        painter.drawLine(line)

    frame = result.window.frame
    cam = aerial_xy(frame.to_local(np.array([[result.x, result.y]]))) if np.isfinite(result.x) else None
    if cam is not None:
        h = np.radians(result.heading_deg)
        tip = cam[0] + 18.0 * np.array([np.sin(h), -np.cos(h)])  # image y points south
        painter.setPen(QPen(QColor(220, 30, 30), 3))
        painter.drawLine(QLineF(cam[0, 0], cam[0, 1], tip[0], tip[1]))
        painter.setBrush(QColor(220, 30, 30))
        painter.drawEllipse(QPointF(cam[0, 0], cam[0, 1]), 4.0, 4.0)
    painter.end()
    return out


class MatchViewer(QDialog):
    """Non-modal dialog showing `compose` for one result, with the colouring and outlier toggles."""

    def __init__(self, result, parent=None):
        super().__init__(parent)
        self.setObjectName("loc2_match_viewer")
        self.result = result
        self.photo = load_photo(result.photo)
        self.setWindowTitle(tr("Loc² matches: {photo}").format(photo=result.photo))
        layout = QVBoxLayout(self)
        controls = QHBoxLayout()
        self.colour_by = QComboBox()
        for key in ("weight", "residual"):
            self.colour_by.addItem(tr(key), key)
        self.colour_by.currentIndexChanged.connect(self.redraw)
        self.outliers = QCheckBox(tr("show outliers"))
        self.outliers.toggled.connect(self.redraw)
        controls.addWidget(QLabel(tr("Colour matches by")))
        controls.addWidget(self.colour_by)
        controls.addWidget(self.outliers)
        controls.addStretch(1)
        layout.addLayout(controls)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        layout.addWidget(self.legend)
        self.picture = _FitLabel()
        layout.addWidget(self.picture, 1)
        self.image = None
        self.redraw()
        self.resize(*initial_size(self.image.width(), self.image.height(), self._available()))

    def _available(self):
        """(width, height) of the available geometry of the screen the viewer opens on."""
        screen = (self.parentWidget().screen() if self.parentWidget() is not None
                  else QGuiApplication.primaryScreen())
        area = screen.availableGeometry()
        return area.width(), area.height()

    def redraw(self, *_):
        by = self.colour_by.currentData() or "weight"
        self.image = compose(self.result, by, self.outliers.isChecked(), self.photo)
        self.picture.set_image(self.image)
        scale = (tr("weight: pale yellow (low) to red (high)") if by == "weight" else
                 tr("residual: green (0 m) to red (≥ {metres:g} m)").format(metres=RESIDUAL_RED_M))
        self.legend.setText(tr("{inliers} inliers of {matches} matches; colour = {scale}; white dots: ground layout "
                               "placed by the pose; red: camera and heading").format(
                                   inliers=self.result.inliers, matches=self.result.matches, scale=scale))


#: room the controls and the legend take above the picture, pixels
CHROME_PX = 110


def initial_size(image_width: int, image_height: int, available) -> tuple:
    """(width, height) of the viewer: the composed picture at its size if it fits in `SCREEN_SHARE` of the
    available screen, else scaled down as a whole (both panels keep their proportions; nothing is cut off)."""
    max_w, max_h = int(available[0] * SCREEN_SHARE), int(available[1] * SCREEN_SHARE)
    scale = min(1.0, (max_w - 40) / image_width, (max_h - CHROME_PX) / image_height)
    return (min(max_w, int(image_width * scale) + 40), min(max_h, int(image_height * scale) + CHROME_PX))


class _FitLabel(QLabel):
    """Shows an image scaled to the label's size, aspect ratio kept: the viewer can be any size."""

    def __init__(self):
        super().__init__()
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # the pixmap must not dictate the dialog's size, or the picture could never shrink
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(64, 64)
        self.image = None

    def set_image(self, image: QImage):
        self.image = image
        self._fit()

    def resizeEvent(self, event):  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self):
        if self.image is None:
            return
        size = self.size()
        if size.width() >= self.image.width() and size.height() >= self.image.height():
            self.setPixmap(QPixmap.fromImage(self.image))
            return
        self.setPixmap(QPixmap.fromImage(self.image.scaled(
            size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)))
