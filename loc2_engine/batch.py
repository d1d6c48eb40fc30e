"""The batch loop shared by `loc2 batch` and the Processing algorithm ``loc2:georeferencephotos``.

A batch is a list of `PhotoJob` (from a folder, a manifest, or a point layer) run through one
`pipeline.Localizer` into one writer: a `gpkg.GeoPackageWriter` (the CLI) or any object with
``write(result)`` (the Processing algorithm's feature sinks). One photo = one `Localizer.localize` call =
one ``write``; a photo that fails for any reason becomes a ``failed`` row with its reason and the batch goes
on. Memory stays flat with the number of photos: Results are written and dropped, only counts and run
times are kept; aerial features are cached (bounded) by the Localizer.

A job with a search extent (``loc2 batch --extent``, the algorithm's EXTENT) is searched for anywhere in it
(`Localizer.localize_in_extent`) when its photo has neither a prior position nor a usable EXIF GPS position;
every other photo is localized around its prior as without an extent.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from . import defaults
from .errors import AerialError, Loc2Error, PhotoError
from .result import Result

_log = logging.getLogger(__name__)

#: photo file extensions a folder batch picks up (compared lower-case), when this Pillow reads them
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
#: photo formats that Pillow reads only through a plugin package: extension -> (format, package)
PLUGIN_PHOTO_FORMATS = {".heic": ("HEIC", "pillow-heif"), ".heif": ("HEIF", "pillow-heif")}


@dataclass
class PhotoJob:
    """One photo to localize.

    photo: path of the image; its string is the photo id written to the ``photo`` field (resume key).
    prior: `pipeline.Prior`; a Prior without a position means "EXIF GPS" (radius and heading still apply).
    aerial: this photo's aerial raster (manifest rows); None: the batch's aerial.
    camera, hfov_deg: this photo's camera type and pinhole HFOV (manifest rows); None: the Localizer's.
    depth_map: ground-truth depth (.npy) for the ``truth`` depth provider.
    exif_heading: take the heading prior from EXIF GPSImgDirection (true north only) when ``prior`` has none.
    extent: (xmin, ymin, xmax, ymax) searched when the photo has no prior position and no EXIF GPS position,
    in extent_crs (None: the aerial raster's CRS); None: such a photo fails ("no GPS position").
    """

    photo: str
    prior: object = None
    aerial: Optional[str] = None
    camera: Optional[str] = None
    hfov_deg: Optional[float] = None
    depth_map: Optional[str] = None
    exif_heading: bool = False
    extent: Optional[Tuple[float, float, float, float]] = None
    extent_crs: Optional[str] = None


@dataclass
class BatchSummary:
    """What a batch did. Counts are per status of the rows written in this run; ``skipped`` were already
    in the output (resume); ``runtimes_s`` are Localizer run times of this run, seconds."""

    total: int = 0
    ok: int = 0
    low_confidence: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: bool = False
    wall_s: float = 0.0
    runtimes_s: List[float] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.ok + self.low_confidence + self.failed

    @property
    def median_runtime_s(self) -> float:
        return statistics.median(self.runtimes_s) if self.runtimes_s else math.nan

    def count(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)


# -- discovering photos ---------------------------------------------------------------------------------

def find_photos(folder, recursive: bool = False) -> List[str]:
    """Image files in ``folder`` (`photo_extensions`, any case), sorted, as absolute path strings.

    Raises `PhotoError` when ``folder`` is not a directory.
    """
    return scan_folder(folder, recursive)[0]


def scan_folder(folder, recursive: bool = False) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(photos, skipped) of ``folder``: the photos as `find_photos` lists them, and (path, why) of every
    other file (hidden files aside), sorted, so that a batch can say what it did not take.

    Raises `PhotoError` when ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise PhotoError(f"The photo folder {folder} does not exist or is not a folder.")
    taken = photo_extensions()
    pattern = root.rglob("*") if recursive else root.glob("*")
    photos, skipped = [], []
    for path in pattern:
        if not path.is_file():
            continue
        if path.suffix.lower() in taken:
            photos.append(str(path.resolve()))
        elif not path.name.startswith("."):  # .DS_Store and the like are not anyone's photos
            skipped.append((str(path.resolve()), _why_skipped(path.suffix.lower(), taken)))
    return sorted(photos), sorted(skipped)


def photo_extensions() -> Tuple[str, ...]:
    """The extensions a folder batch takes: those of `PHOTO_EXTENSIONS` and `PLUGIN_PHOTO_FORMATS` that this
    Pillow reads (WebP needs Pillow built with libwebp; HEIC/HEIF a registered plugin such as pillow-heif)."""
    from PIL import Image

    readable = Image.registered_extensions()
    return tuple(e for e in PHOTO_EXTENSIONS + tuple(PLUGIN_PHOTO_FORMATS) if e in readable)


def _why_skipped(extension: str, taken: Sequence[str]) -> str:
    if extension in PLUGIN_PHOTO_FORMATS:
        name, package = PLUGIN_PHOTO_FORMATS[extension]
        return (f"{name} photos need a Pillow plugin ({package}) that is not installed here; convert them to "
                f"JPEG")
    if extension in PHOTO_EXTENSIONS:
        return f"this Pillow cannot read {extension[1:].upper()} (it was built without it); convert to JPEG"
    return f"not a photo format loc2 batch takes ({', '.join(e[1:] for e in taken)})"


def folder_jobs(folder, recursive: bool = False, prior=None, exif_heading: bool = False) -> List[PhotoJob]:
    """One job per image in ``folder``; ``prior`` (a position-less `Prior`: radius, heading) for all."""
    return [PhotoJob(photo=p, prior=prior, exif_heading=exif_heading) for p in find_photos(folder, recursive)]


def with_extent(jobs: Iterable[PhotoJob], extent, extent_crs=None) -> List[PhotoJob]:
    """``jobs`` with the search extent (xmin, ymin, xmax, ymax) in ``extent_crs`` (None: each job's aerial
    raster's CRS) for those of their photos that have no prior position and no EXIF GPS position."""
    box = tuple(float(v) for v in extent)
    return [replace(job, extent=box, extent_crs=extent_crs) for job in jobs]


def check_extent(localizer, extent, crs) -> None:
    """PriorError when ``extent`` (xmin, ymin, xmax, ymax in ``crs``) cannot be searched with ``localizer``'s
    model: empty, not on the Earth, or more windows than `extent.MAX_WINDOWS`. Checked before the batch, so
    that it stops instead of failing every photo without a position; a localizer whose model lives elsewhere
    (`cluster.ClusterLocalizer`) checks it there with its own ``check_extent``."""
    if hasattr(localizer, "check_extent"):
        localizer.check_extent(extent, crs)
        return
    from .extent import cover

    cover(extent, crs, localizer.matcher)


def manifest_jobs(rows: Iterable, radius_m: Optional[float] = None) -> List[PhotoJob]:
    """Jobs from `manifest.ManifestRow` rows (docs/manifest.md; paths already absolute).

    Each row's prior (prior_x/prior_y in ``crs``, radius_m, heading_prior_deg/heading_tolerance_deg) is
    used; a row without a prior position uses the photo's EXIF GPS. ``radius_m`` overrides the rows' radius.
    """
    from .pipeline import Prior

    jobs = []
    for row in rows:
        radius = radius_m if radius_m is not None else row.radius_m
        prior = Prior(x=row.prior_x, y=row.prior_y, crs=row.crs,
                      radius_m=radius if radius is not None else defaults.RADIUS_M,
                      heading_deg=row.heading_prior_deg, heading_tolerance_deg=row.heading_tolerance_deg)
        camera = None if row.camera in (None, "auto") else row.camera
        jobs.append(PhotoJob(photo=row.photo, prior=prior, aerial=row.aerial, camera=camera,
                             hfov_deg=row.hfov_deg, depth_map=row.depth))
    return jobs


# -- the loop -------------------------------------------------------------------------------------------

def output_crs(jobs: Sequence[PhotoJob], aerial=None):
    """CRS of the output: the batch aerial raster's, else the first job's raster's (`AerialError` if none
    can be read: the batch cannot run). ``aerial`` may also be a source with a ``crs`` (the plugin's renderer
    of a QGIS layer)."""
    import pyproj

    from .aerial import raster_info

    source = aerial or next((j.aerial for j in jobs if j.aerial), None)
    if source is None:
        raise AerialError("No aerial raster was given (--aerial, or an `aerial` column in the manifest).")
    if not isinstance(source, (str, os.PathLike)):
        return pyproj.CRS.from_user_input(source.crs)
    return raster_info(source)[0]


def run_batch(jobs: Sequence[PhotoJob], aerial, out, localizer, *, resume: bool = False,
              progress: Optional[Callable[[int, int, Result], None]] = None,
              cancelled: Optional[Callable[[], bool]] = None) -> BatchSummary:
    """Localize every job and write one row set per photo.

    jobs: `PhotoJob` list; aerial: raster path (or any source `Localizer.localize` accepts) for jobs
    without their own; out: a writer with ``write(result)`` (and ``photos()`` when ``resume``), e.g.
    `gpkg.GeoPackageWriter`; localizer: object with ``localize(photo, aerial, prior, depth_map=None) ->
    Result`` (normally `pipeline.Localizer`), or one with its own ``run_batch`` of these arguments
    (`cluster.ClusterLocalizer`: a Dask cluster's workers localize). resume: skip jobs whose photo id
    ``out.photos()`` already has. progress(done_or_skipped, total, result): after each written photo.
    cancelled(): checked before each photo; True stops the batch cleanly (finished photos are already written).
    """
    if hasattr(localizer, "run_batch"):
        return localizer.run_batch(jobs, aerial, out, resume=resume, progress=progress, cancelled=cancelled)
    start = time.perf_counter()
    summary = BatchSummary(total=len(jobs))
    done_ids = set(out.photos()) if resume else set()
    for job in jobs:
        if job.photo in done_ids:
            summary.skipped += 1
            continue
        if cancelled is not None and cancelled():
            summary.cancelled = True
            break
        record(localize_job(job, aerial, localizer), out, summary, progress)
    summary.wall_s = time.perf_counter() - start
    return summary


def record(result: Result, out, summary: BatchSummary,
           progress: Optional[Callable[[int, int, Result], None]] = None) -> None:
    """Write one photo's rows to ``out``, count them in ``summary``, report them to ``progress``. The Result
    (the aerial window, the arrays) is dropped when this returns: nothing of it outlives its row."""
    out.write(result)
    summary.count(result.status)
    summary.runtimes_s.append(float(result.runtime_s))
    if progress is not None:
        progress(summary.skipped + summary.done, summary.total, result)


def localize_job(job: PhotoJob, aerial, localizer) -> Result:
    """Run one job; any exception becomes a failed Result carrying its reason (the batch must go on). A job
    with an extent whose photo has no position to search around goes to ``localizer.localize_in_extent``
    (with the heading prior it has), every other one to ``localizer.localize``."""
    start = time.perf_counter()
    try:
        source = job.aerial or aerial
        if source is None:
            raise AerialError(f"No aerial raster for {os.path.basename(job.photo)}: give --aerial or an "
                              "`aerial` column in the manifest.")
        prior = _with_exif_heading(job) if job.exif_heading else job.prior
        if prior is not None:
            prior.validate()  # a NaN or zero radius is refused here, not after the matcher ran
        if job.extent is not None and _without_position(job, prior):
            result = localizer.localize_in_extent(
                _photo_input(job), source, job.extent, job.extent_crs, getattr(prior, "heading_deg", None),
                getattr(prior, "heading_tolerance_deg", None), depth_map=job.depth_map)
        else:
            _check_exif_gps(job, prior)
            result = localizer.localize(_photo_input(job), source, prior, depth_map=job.depth_map)
    except Exception as exc:  # noqa: BLE001 -- one photo's failure, whatever it is, must not end the batch
        if not isinstance(exc, Loc2Error):
            _log.exception("unexpected error on %s", job.photo)  # a bug: keep its traceback for the report
            exc = RuntimeError(f"Internal error while localizing {os.path.basename(job.photo)}: "
                               f"{type(exc).__name__}: {exc}")
        return Result.failure(job.photo, exc, runtime_s=time.perf_counter() - start)
    result.photo = job.photo  # the resume key is the job's path, however the localizer spelled it
    return result


def _photo_input(job: PhotoJob):
    """The path, or a `GroundImage` loaded with this job's camera / HFOV when the job overrides them."""
    if job.camera is None and job.hfov_deg is None:
        return job.photo
    from .ground import GroundImage

    return GroundImage.load(job.photo, camera=job.camera or "auto", hfov_deg=job.hfov_deg)


def prior_position(job: PhotoJob):
    """Where ``job``'s photo is looked for: ((x, y), crs) of its prior's position (crs None: the raster's),
    else of its EXIF GPS ((lon, lat), "EPSG:4326"); None when it has neither (or the photo is unreadable)."""
    prior = job.prior
    if prior is not None and prior.has_position:
        return (float(prior.x), float(prior.y)), prior.crs
    info = _exif(job)
    if info is None or info.lonlat is None:
        return None
    return (float(info.lonlat[0]), float(info.lonlat[1])), "EPSG:4326"


def _without_position(job: PhotoJob, prior) -> bool:
    """True when the job has no prior position and its photo's EXIF no usable GPS position (absent or
    invalid); False when it has one, or when the photo cannot be read (`localize` then fails with the reason)."""
    if prior is not None and prior.has_position:
        return False
    info = _exif(job)
    return info is not None and info.lonlat is None


def _check_exif_gps(job: PhotoJob, prior) -> None:
    """PriorError when the photo's EXIF GPS is to be the prior but is invalid (minutes of 60 or more, a
    latitude beyond ±90°, ...): the failure then says so instead of "no GPS position"."""
    if prior is not None and prior.has_position:
        return
    from .exif import invalid_gps_error

    info = _exif(job)
    error = invalid_gps_error(job.photo, info) if info is not None else None
    if error is not None:
        raise error


def _with_exif_heading(job: PhotoJob):
    """``job.prior`` with its heading from EXIF GPSImgDirection when it has none and EXIF says true north."""
    from .pipeline import Prior

    prior = job.prior or Prior()
    if prior.heading_deg is not None:
        return prior
    info = _exif(job)
    if info is None or info.gps_heading_deg is None or info.gps_heading_ref == "M":  # magnetic is not true north
        return prior
    return replace(prior, heading_deg=float(info.gps_heading_deg))


def _exif(job: PhotoJob):
    """The photo's `exif.ExifInfo`, or None when it cannot be read (localize reports that with its reason)."""
    from .exif import read_exif

    try:
        return read_exif(job.photo)
    except Loc2Error:
        return None
