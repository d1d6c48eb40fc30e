"""scripts/reproject_dataset.py (used by `make bench` to check CRS invariance): positions follow the raster
into the new CRS, and the engine reads the same north-up metric window from the warped raster."""

import csv
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter

from script_modules import load_script

from loc2_engine.aerial import AerialWindow
from loc2_engine.georef import transform_points

UTM = "EPSG:32634"
ORIGIN = (420_000.0, 7_730_000.0)   # Tromsø, 69.7° N: EPSG:3857 scales lengths by 2.9 there
TRUE = (420_080.0, 7_729_910.0)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "src"
    (root / "aerial").mkdir(parents=True)
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    data = np.stack([gaussian_filter(rng.uniform(0, 255, (400, 400)), 3) for _ in range(3)])
    data = ((data - data.min()) / np.ptp(data) * 255).astype(np.uint8)
    with rasterio.open(root / "aerial" / "t.tif", "w", driver="GTiff", width=400, height=400, count=3,
                       dtype="uint8", crs=UTM, transform=from_origin(*ORIGIN, 0.5, 0.5)) as dst:
        dst.write(data)
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["photo", "aerial", "crs", "prior_x", "prior_y", "true_x", "true_y", "true_heading_deg",
                    "grid_heading_deg"])
        w.writerow(["photos/a.jpg", "aerial/t.tif", UTM, TRUE[0] + 7, TRUE[1] - 3, *TRUE, 30.0, 32.0])
    return root


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_reprojected_copy_keeps_positions_and_the_window(dataset, tmp_path, crs):
    out = tmp_path / "dst"
    load_script("reproject_dataset").reproject_dataset(str(dataset), str(out), crs)
    row = next(csv.DictReader(open(out / "manifest.csv")))
    assert row["crs"] == crs and row["true_heading_deg"] == "30.0" and row["grid_heading_deg"] == ""
    back = transform_points([[float(row["true_x"]), float(row["true_y"])]], crs, UTM)[0]
    assert np.allclose(back, TRUE, atol=1e-3)
    prior = transform_points([[float(row["prior_x"]), float(row["prior_y"])]], crs, UTM)[0]
    assert np.allclose(prior, (TRUE[0] + 7, TRUE[1] - 3), atol=1e-3)
    assert os.path.islink(out / "photos")
    with rasterio.open(out / "aerial" / "t.tif") as src:
        assert src.crs.to_string() == crs
    a = AerialWindow.from_raster(str(dataset / "aerial" / "t.tif"), TRUE, UTM, 60.0, 0.5)
    b = AerialWindow.from_raster(str(out / "aerial" / "t.tif"), (float(row["true_x"]), float(row["true_y"])),
                                 crs, 60.0, 0.5)
    diff = np.abs(a.image.astype(float) - b.image.astype(float))
    assert b.valid.all() and diff.mean() < 3.0, diff.mean()
    shifted = np.abs(a.image[:, 2:].astype(float) - b.image[:, :-2].astype(float))
    assert shifted.mean() > 2 * diff.mean()  # the comparison can see a 1 m misregistration
