"""Dataset presets: which towns (style, real lon/lat origin -> UTM zone), how many views, what resolution.

Train and bench never share a town origin, a seed stream (``seed_offset``) or style parameters
(``variant``: bench towns draw from shifted ranges, see town.default_style).

``heldout`` is the generalization benchmark: only the kinds of place that train never uses
(town.PLACE_STYLES; tests keep them out of TRAIN_TOWNS), origins in UTM zones and hemispheres that neither train nor bench uses, a seed stream
and style variant of its own, the sun anywhere in the sky and lit apart for the photos, some overcast skies,
and another camera: a phone-like response (photos.camera_response), camera heights 1.2-3 m, JPEG 80-92.

``train-places`` is more training data of other kinds: the training kinds of place (town.TRAIN_PLACE_STYLES:
parks and campuses) at origins in UTM zones and hemispheres that no other preset uses, at train's resolutions,
with the light and camera variety of real photos (the sun anywhere, 10-75 degrees high, lit apart for the
photos, some overcast skies, the phone-like camera, camera heights 1.2-3 m), and towns on hills and slopes
(``terrain``: 0-25 m of relief, grades mostly under 10 %). Its orthophotos are ordinary, not true (roofs lean
away from the nadir point of an aerial camera 800-3000 m up, up to about 0.15 m per metre of height), and its
pinholes come through lenses (radial distortion in the corners drawn from -8 % to +3 %, plus a smaller
4th-order term). Its roads carry the markings of several countries, one style per town (``marking_styles``:
continental European, British/Australian, North American with yellow centre lines and stop bars, Japanese,
worn paint, none at all). The other presets but heldout-hills and unseen are flat, with true orthophotos, perfect
pinholes and the same white markings everywhere.

``heldout-hills`` is ``heldout`` (the same towns, seed stream, light and cameras) on hills, with leaning
orthophotos, lenses and the markings of several countries as in ``train-places``: the generalization benchmark
with everything that flat true orthophotos and perfect pinholes leave out.

``unseen`` is ``heldout-hills``' world, light and cameras in a kind of place that neither training nor heldout
has (town.UNSEEN_STYLES: dense East-Asian alleys), four towns in UTM zones no other preset uses, a seed stream
of its own, Japanese road markings, worn ones or none: a benchmark that no choice of training data has touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

from .town import MARKING_STYLES, SOUTHERN_SKY_AZIMUTH_DEG, SUN_ELEVATION_DEG


@dataclass(frozen=True)
class TownSpec:
    name: str
    style: str
    lon: float
    lat: float


@dataclass(frozen=True)
class Preset:
    name: str
    towns: Tuple[TownSpec, ...]
    n_pano: int                          # panoramas per town
    n_pinhole: int                       # pinhole photos per town
    pano_hw: Tuple[int, int]             # (H, W), W = 2 H
    pinhole_hw: Tuple[int, int]          # upright (H, W)
    hfov_deg: Tuple[float, float]
    size_m: float = 256.0                # town square side
    gsd: float = 0.2                     # orthophoto m/px
    variant: str = "train"               # style-parameter family
    seed_offset: int = 0                 # separates the seed streams of presets
    known_heading_fraction: float = 0.5  # rows with a heading prior
    heading_tolerance_deg: float = 15.0
    prior_noise_m: Tuple[float, float] = (5.0, 20.0)
    radius_m: float = 25.0
    rotated_pinholes: bool = True        # store some pinholes rotated with EXIF Orientation 6/8
    compass_fraction: float = 0.3        # photos with a noisy GPSImgDirection
    camera_margin_m: float = 60.0        # cameras stay this far inside the town edge
    supersample: int = 1                 # k x k colour samples per pixel (anti-aliasing; depth at centres)
    sun_azimuth_deg: Tuple[float, float] = SOUTHERN_SKY_AZIMUTH_DEG  # grid azimuth range of the sun
    sun_elevation_deg: Tuple[float, float] = SUN_ELEVATION_DEG      # elevation range of the sun, degrees
    overcast: float = 0.0                # fraction of skies (orthophoto's and photos' apart) that are overcast
    photo_sun: str = "same"              # "independent": the photos' sun drawn apart from the orthophoto's
                                         # (taken at another time of day or year, as real ones are)
    camera_height_m: Tuple[float, float] = (1.4, 2.5)  # camera centre above the ground
    pitch_deg: float = 3.0               # pinholes: pitch drawn from +-this (panoramas stay level)
    roll_deg: float = 3.0                # pinholes: roll drawn from +-this
    jpeg_quality: Tuple[int, int] = (72, 96)  # JPEG quality drawn from [lo, hi)
    phone_camera: bool = False           # photos.camera_response (auto exposure, colour temperature, shot
                                         # noise, tone curve, sharpening) instead of photos.photometric
    terrain: bool = False                # hills and slopes under the town (terrain.py); False: flat at z = 0
    ortho_flying_height_m: Optional[Tuple[float, float]] = None  # an ordinary orthophoto, roofs leaning out,
                                         # from an aerial camera drawn this high (ortho.draw_aerial_camera);
                                         # None: a true orthophoto
    lens_k1_range: Optional[Tuple[float, float]] = None  # pinholes through lenses: radial distortion in the
                                         # corners drawn from this range (lens.draw_lens); None: perfect pinholes
    marking_styles: Tuple[str, ...] = ()  # road markings of several countries, worn or none, one drawn per town
                                         # (town.MARKING_STYLES, town.draw_markings); (): the default markings


# origins slightly off the real centres; zones 31-34 north, latitudes 46-70 degrees
TRAIN_TOWNS = (
    TownSpec("zurich", "downtown", 8.531, 47.381), TownSpec("bern", "suburb", 7.452, 46.941),
    TownSpec("basel", "industrial", 7.611, 47.570), TownSpec("freiburg", "suburb", 7.838, 47.990),
    TownSpec("munich", "downtown", 11.571, 48.150), TownSpec("leipzig", "industrial", 12.391, 51.330),
    TownSpec("dresden", "downtown", 13.721, 51.061), TownSpec("oslo", "suburb", 10.771, 59.921),
    TownSpec("trondheim", "industrial", 10.401, 63.421), TownSpec("hamburg", "downtown", 9.981, 53.561),
    TownSpec("graz", "suburb", 15.431, 47.081), TownSpec("bergen", "industrial", 5.331, 60.381),
)
BENCH_TOWNS = (
    TownSpec("lausanne", "downtown", 6.641, 46.521), TownSpec("stavanger", "suburb", 5.741, 58.961),
    TownSpec("nuremberg", "industrial", 11.071, 49.461), TownSpec("tromso", "suburb", 18.951, 69.651),
)
DEMO_TOWNS = (TownSpec("lucerne", "downtown", 8.301, 47.061),)
# two towns of each kind of place; UTM zones 35N, 29N, 54S, 27N, 22S, 11N: none of train's or bench's,
# both hemispheres east-west and north-south, two towns above 60 degrees north
HELDOUT_TOWNS = (
    TownSpec("porvoo", "oldtown", 25.661, 60.391), TownSpec("evora", "oldtown", -7.911, 38.571),
    TownSpec("hahndorf", "village", 138.811, -35.031), TownSpec("vik", "village", -19.011, 63.421),
    TownSpec("curitiba", "retail", -49.271, -25.431), TownSpec("calgary", "retail", -114.071, 51.041),
)
# training kinds of place, alternating so that --towns 2 gives one of each; UTM zones 55S, 17N, 53N, 59S, 30N,
# 52N, 19S, 10N, 37S, 21S, 6N, 23S: none of train's, bench's or heldout's, six in the southern hemisphere
TRAIN_PLACE_TOWNS = (
    TownSpec("melbourne", "park", 144.961, -37.811), TownSpec("toronto", "campus", -79.391, 43.661),
    TownSpec("kyoto", "park", 135.771, 35.011), TownSpec("christchurch", "campus", 172.631, -43.521),
    TownSpec("madrid", "park", -3.681, 40.411), TownSpec("seoul", "campus", 126.951, 37.461),
    TownSpec("santiago", "park", -70.651, -33.441), TownSpec("vancouver", "campus", -123.251, 49.261),
    TownSpec("nairobi", "park", 36.821, -1.291), TownSpec("montevideo", "campus", -56.171, -34.901),
    TownSpec("anchorage", "park", -149.891, 61.211), TownSpec("saopaulo", "campus", -46.731, -23.561),
)

# a kind of place that neither training nor heldout has; UTM zones 51N, 48N, 54N, 50N: no other preset's
UNSEEN_TOWNS = (
    TownSpec("taipei", "alleys", 121.521, 25.041), TownSpec("hanoi", "alleys", 105.851, 21.031),
    TownSpec("sapporo", "alleys", 141.351, 43.061), TownSpec("kowloon", "alleys", 114.171, 22.311),
)

#: what flat true orthophotos and perfect pinholes leave out: hills, leaning roofs, lenses, other road markings
UNEVEN_WORLD = dict(terrain=True, ortho_flying_height_m=(800.0, 3000.0), lens_k1_range=(-0.08, 0.03),
                    marking_styles=MARKING_STYLES)

PRESETS = {
    "demo": Preset("demo", DEMO_TOWNS, 3, 3, (512, 1024), (480, 640), (60.0, 90.0), size_m=256.0,
                   variant="bench", seed_offset=2_000_000),
    "train": Preset("train", TRAIN_TOWNS, 90, 80, (256, 512), (192, 256), (50.0, 100.0), size_m=256.0,
                    variant="train", seed_offset=0, rotated_pinholes=False, supersample=2),
    "bench": Preset("bench", BENCH_TOWNS, 12, 13, (512, 1024), (480, 640), (55.0, 95.0), size_m=256.0,
                    variant="bench", seed_offset=1_000_000),
    "heldout": Preset("heldout", HELDOUT_TOWNS, 8, 8, (512, 1024), (480, 640), (55.0, 95.0), size_m=256.0,
                      variant="heldout", seed_offset=3_000_000, sun_azimuth_deg=(0.0, 360.0),
                      sun_elevation_deg=(10.0, 70.0), overcast=0.3, photo_sun="independent",
                      camera_height_m=(1.2, 3.0), pitch_deg=3.0, roll_deg=2.0, jpeg_quality=(80, 93),
                      phone_camera=True),
    "train-places": Preset("train-places", TRAIN_PLACE_TOWNS, 90, 80, (256, 512), (192, 256), (50.0, 100.0),
                           size_m=256.0, variant="train", seed_offset=4_000_000, rotated_pinholes=False,
                           supersample=2, sun_azimuth_deg=(0.0, 360.0), sun_elevation_deg=(10.0, 75.0),
                           overcast=0.3, photo_sun="independent", camera_height_m=(1.2, 3.0), phone_camera=True,
                           **UNEVEN_WORLD),
}
PRESETS["heldout-hills"] = replace(PRESETS["heldout"], name="heldout-hills", **UNEVEN_WORLD)
PRESETS["unseen"] = replace(PRESETS["heldout-hills"], name="unseen", towns=UNSEEN_TOWNS, n_pano=12, n_pinhole=12,
                            seed_offset=5_000_000, marking_styles=("japan", "worn", "unmarked"))


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synth preset {name!r}; choose one of {', '.join(PRESETS)}") from None
