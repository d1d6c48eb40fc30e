"""Captures: a batch's photos grouped into sequences, and the sequence pass that smooths each one.

**Grouping** (`group_sequences`): photos that a manifest puts in one ``sequence`` form one sequence (in time
order when every one of them has a time, else in the manifest's order, one second apart). The other photos
with a time are sorted by it and split wherever two consecutive photos are more than ``max_gap_s`` apart in
time or their prior positions more than ``max_gap_m`` apart; a photo without a time is a sequence of its own.
A photo's time is the manifest's ``time`` (ISO 8601, or seconds), else EXIF DateTimeOriginal (+
SubSecTimeOriginal), else the EXIF GPS time (`exif.ExifInfo`); its prior position is the manifest's prior,
else its EXIF GPS.

**The sequence pass** (`smooth_captures`, in memory): each sequence of two or more photos is smoothed
(`smoother.smooth_sequence`) from the single-photo poses and rival poses of its photos (`pose_record`).
`run_sequence_pass` runs it after a batch from what the GeoPackage holds, so it works the same after
``--resume``, and stores the answer in the ``sequence`` / ``seq_*`` columns of ``camera_poses`` and one line
per sequence in ``trajectory`` (docs/sequences.md); the Processing algorithm runs it on its run's results.
The smoothing happens in the local true-north metric frame (`georef.LocalFrame`) of each sequence, whatever
the output CRS.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .defaults import MAX_GAP_M, MAX_GAP_S
from .errors import Loc2Error, ManifestError
from .smoother import NO_POSE, PhotoEvidence, SmootherConfig, smooth_sequence



@dataclass(frozen=True)
class PhotoTiming:
    """What grouping knows of one photo: time_s (seconds, POSIX; None unknown), lonlat (prior position, WGS84
    degrees; None unknown), sequence (an id the manifest gives; None: group by time)."""

    photo: str
    time_s: Optional[float] = None
    lonlat: Optional[Tuple[float, float]] = None
    sequence: Optional[str] = None


@dataclass(frozen=True)
class PhotoSequence:
    """One capture: id, members (indices into the grouped list, in time order), times_s (N,) seconds."""

    id: str
    members: Tuple[int, ...]
    times_s: np.ndarray = field(repr=False)


def group_sequences(timings: Sequence[PhotoTiming], max_gap_s: float = MAX_GAP_S,
                    max_gap_m: float = MAX_GAP_M) -> List[PhotoSequence]:
    """The sequences of ``timings`` (module docstring), every photo in exactly one, in order of their first
    photo's time (photos without time last). Ids: the manifest's, else the first photo's file name without
    its extension (made unique with a suffix)."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    out: List[PhotoSequence] = []
    given: Dict[str, List[int]] = {}
    timed, untimed = [], []
    for i, item in enumerate(timings):
        if item.sequence:
            given.setdefault(item.sequence, []).append(i)
        elif item.time_s is not None:
            timed.append(i)
        else:
            untimed.append(i)
    for name, members in given.items():
        times = [timings[i].time_s for i in members]
        if all(t is not None for t in times):
            order = sorted(range(len(members)), key=lambda k: (times[k], timings[members[k]].photo))
            members, times = [members[k] for k in order], [times[k] for k in order]
        else:  # keep the manifest's order, a second apart
            times = list(range(len(members)))
        out.append(PhotoSequence(name, tuple(members), np.asarray(times, np.float64)))
    timed.sort(key=lambda i: (timings[i].time_s, timings[i].photo))
    run: List[int] = []
    for i in timed:
        if run and _splits(timings[run[-1]], timings[i], max_gap_s, max_gap_m, geod):
            out.append(_generated(run, timings))
            run = []
        run.append(i)
    if run:
        out.append(_generated(run, timings))
    out += [_generated([i], timings) for i in untimed]
    out.sort(key=lambda s: (math.inf if timings[s.members[0]].time_s is None else timings[s.members[0]].time_s))
    return _unique_ids(out)


def _splits(a: PhotoTiming, b: PhotoTiming, max_gap_s: float, max_gap_m: float, geod) -> bool:
    if b.time_s - a.time_s > max_gap_s:
        return True
    if a.lonlat is None or b.lonlat is None:
        return False
    return geod.inv(a.lonlat[0], a.lonlat[1], b.lonlat[0], b.lonlat[1])[2] > max_gap_m


def _generated(members: List[int], timings: Sequence[PhotoTiming]) -> PhotoSequence:
    name = os.path.splitext(os.path.basename(timings[members[0]].photo))[0]
    times = [timings[i].time_s if timings[i].time_s is not None else 0.0 for i in members]
    return PhotoSequence(name, tuple(members), np.asarray(times, np.float64))


def _unique_ids(sequences: List[PhotoSequence]) -> List[PhotoSequence]:
    seen: Dict[str, int] = {}
    out = []
    for s in sequences:
        n = seen.get(s.id, 0)
        seen[s.id] = n + 1
        out.append(s if n == 0 else PhotoSequence(f"{s.id}-{n + 1}", s.members, s.times_s))
    return out


# -- what each photo's time and prior are -----------------------------------------------------------------

def parse_time(text: str) -> float:
    """Seconds (POSIX) of a manifest ``time``: ISO 8601 ("2024-06-01T10:00:03.250", with or without an offset;
    naive times are taken as UTC, only differences matter) or a number of seconds. Raises ValueError."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    return datetime_seconds(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def datetime_seconds(when: _dt.datetime) -> float:
    """POSIX seconds of ``when``; a naive datetime (a camera's clock) is taken as UTC."""
    return (when if when.tzinfo is not None else when.replace(tzinfo=_dt.timezone.utc)).timestamp()


def photo_timing(photo: str, row=None) -> PhotoTiming:
    """The `PhotoTiming` of ``photo`` from its manifest row (`manifest.ManifestRow`, or None) and EXIF.

    Raises ManifestError for a ``time`` cell that does not parse; an unreadable photo just has no EXIF time.
    """
    from .exif import read_exif

    time_s = lonlat = sequence = None
    if row is not None:
        sequence = (row.extra.get("sequence") or "").strip() or None
        text = (row.extra.get("time") or "").strip()
        if text:
            try:
                time_s = parse_time(text)
            except ValueError:
                raise ManifestError(f"The manifest, line {row.line}: time {text!r} is neither an ISO 8601 date "
                                    f"and time (2024-06-01T10:00:03.25) nor a number of seconds.") from None
        if row.prior_xy is not None:
            from .georef import transform_points

            lonlat = tuple(float(v) for v in transform_points([row.prior_xy], row.crs, "EPSG:4326")[0])
    if time_s is None or lonlat is None:
        try:
            info = read_exif(photo)
        except Loc2Error:
            info = None
        if info is not None:
            when = info.taken_at or info.gps_time
            time_s = time_s if time_s is not None or when is None else datetime_seconds(when)
            lonlat = lonlat or info.lonlat
    return PhotoTiming(photo, time_s, lonlat, sequence)


def job_timing(job, crs=None) -> PhotoTiming:
    """The `PhotoTiming` of a batch job (`batch.PhotoJob`, e.g. one made from a point layer): its time from
    EXIF, its prior position from the job's prior when that has one (in the prior's CRS, else ``crs``), else
    from EXIF GPS."""
    timing = photo_timing(job.photo)
    prior = job.prior
    if prior is None or not prior.has_position:
        return timing
    from .georef import transform_points

    lon, lat = transform_points([(prior.x, prior.y)], prior.crs or crs, "EPSG:4326")[0]
    return replace(timing, lonlat=(float(lon), float(lat)))


# -- the pass -----------------------------------------------------------------------------------------------

@dataclass
class SequenceSummary:
    """What a sequence pass did: sequences smoothed (two or more localized photos), photos in them, photos
    the sequences overruled, and photos without a pose of their own that got one from their sequence."""

    sequences: int = 0
    photos: int = 0
    overruled: int = 0
    filled: int = 0


@dataclass
class SequencePass:
    """What a sequence pass found, ready to store: poses {photo: {field of `gpkg.SEQUENCE_FIELDS`: value}}
    (every grouped photo; ``sequence`` alone where its sequence has no pose at all), lines [(OGR LineString
    through the smoothed positions, in the pass's CRS; trajectory attributes)], one per sequence smoothed, and
    the summary."""

    poses: Dict[str, dict] = field(default_factory=dict)
    lines: List[tuple] = field(default_factory=list)
    summary: SequenceSummary = field(default_factory=SequenceSummary)


def run_sequence_pass(writer, photos: Sequence[str], rows: Optional[Sequence] = None, *,
                      max_gap_s: float = MAX_GAP_S, max_gap_m: float = MAX_GAP_M,
                      config: SmootherConfig = SmootherConfig()) -> SequenceSummary:
    """Group ``photos`` (the batch's photo ids) into sequences and smooth each from what ``writer`` (an open
    `gpkg.GeoPackageWriter`) holds; store the result with ``writer.write_sequences``.

    rows: the batch's manifest rows, by position of ``photos`` (None: a folder batch). Photos not in the file
    yet (a cancelled batch) are left out. Raises ManifestError for a bad ``time`` cell, OutputError when the
    file cannot be written.
    """
    stored = writer.pose_evidence()
    timings = [photo_timing(p, rows[i] if rows is not None else None) for i, p in enumerate(photos) if p in stored]
    found = smooth_captures(stored, writer.crs, timings, max_gap_s=max_gap_s, max_gap_m=max_gap_m, config=config)
    writer.write_sequences(found.poses, found.lines)
    return found.summary


def smooth_captures(stored: Dict[str, dict], crs, timings: Sequence[PhotoTiming], *,
                    max_gap_s: float = MAX_GAP_S, max_gap_m: float = MAX_GAP_M,
                    config: SmootherConfig = SmootherConfig()) -> SequencePass:
    """The sequence pass in memory: group ``timings`` (`group_sequences`) and smooth each sequence of two or
    more photos from ``stored``, nothing written.

    stored: {photo: record} as `pose_record` makes them (the single-photo pose in ``crs``, a pyproj-compatible
    CRS, and its rivals), holding every photo of ``timings``; crs: also the CRS of the smoothed positions.
    """
    from .georef import LocalFrame
    from .gpkg import line_string

    out = SequencePass()
    for seq in group_sequences(timings, max_gap_s, max_gap_m):
        names = [timings[k].photo for k in seq.members]
        records = [stored[name] for name in names]
        out.poses.update({name: {"sequence": seq.id} for name in names})
        anchor = next((r for r in records if r["x"] is not None), None)
        if anchor is None:
            continue
        if len(names) < 2:  # nothing to smooth: the photo's own pose is its sequence's
            out.poses[names[0]].update(seq_x=anchor["x"], seq_y=anchor["y"], seq_heading_deg=anchor["heading_deg"],
                                       seq_sigma_m=anchor["sigma_m"], seq_overruled=0)
            continue
        frame = LocalFrame(crs, (anchor["x"], anchor["y"]))
        smoothed = smooth_sequence(seq.times_s, [_evidence(r, frame) for r in records], config)
        if not np.isfinite(smoothed.x).any():
            continue
        xy = frame.from_local(np.stack([smoothed.x, smoothed.y], axis=1))
        for k, name in enumerate(names):
            out.poses[name] = {"sequence": seq.id, "seq_x": float(xy[k, 0]), "seq_y": float(xy[k, 1]),
                               "seq_heading_deg": float(smoothed.heading_deg[k]),
                               "seq_sigma_m": float(smoothed.sigma_m[k]), "seq_overruled": int(smoothed.overruled[k])}
        steps = np.hypot(np.diff(smoothed.x), np.diff(smoothed.y))
        out.lines.append((line_string(xy), {"sequence": seq.id, "photos": len(names),
                                            "overruled": int(smoothed.overruled.sum()),
                                            "length_m": float(steps.sum())}))
        out.summary.sequences += 1
        out.summary.photos += len(names)
        out.summary.overruled += int(smoothed.overruled.sum())
        out.summary.filled += int((smoothed.choice == NO_POSE).sum())
    return out


def pose_record(pose_row: dict, rivals: Sequence = ()) -> dict:
    """One photo's record for `smooth_captures` from the rows written for it: pose_row, its ``camera_poses``
    attributes (`gpkg.layer_rows`; x, y in the layer CRS, None when it failed), rivals, its ``rival_poses``
    rows (`gpkg.rival_rows`: (OGR point, attributes), best first). The same record as
    `gpkg.GeoPackageWriter.pose_evidence` reads back: x, y, heading_deg, sigma_m, confidence, status, and
    rivals (R, 4): x, y, heading_deg, gap."""
    record = {name: pose_row.get(name) for name in ("x", "y", "heading_deg", "sigma_m", "confidence", "status")}
    record["rivals"] = np.array([(g.GetX(), g.GetY(), a["heading_deg"], a["gap"]) for g, a in rivals],
                                np.float64).reshape(-1, 4)
    return record


def _evidence(record: dict, frame) -> PhotoEvidence:
    """A stored pose (layer CRS, `gpkg.GeoPackageWriter.pose_evidence`) as `PhotoEvidence` in ``frame``'s
    local metres; a failed photo has none."""
    if record["x"] is None or record["heading_deg"] is None:
        return PhotoEvidence.none()
    rivals = record["rivals"]
    xy = frame.to_local(np.vstack([[[record["x"], record["y"]]], rivals[:, :2]]))
    rivals_local = np.column_stack([xy[1:], rivals[:, 2:]]) if len(rivals) else rivals
    sigma = record["sigma_m"] if record["sigma_m"] is not None else math.nan
    return PhotoEvidence.from_pose(xy[0, 0], xy[0, 1], record["heading_deg"], sigma,
                                   record["confidence"] or 0.0, rivals_local)
