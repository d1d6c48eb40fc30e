"""Benchmark tables: statistics per group, recall over all photos, markdown, spreading a limit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from loc2_engine.bench import (PhotoRecord, group_tables, heading_error_deg, markdown_table, position_error_m,
                               record_for, records_to_json, reliability, report, spread_subset, summarize)
from loc2_engine.result import Result


def _rec(camera, orientation, status, pos, head, t=0.5):
    return PhotoRecord("p", camera, orientation, status, pos, head, t, 0.9)


def test_heading_error_wraps():
    assert heading_error_deg(359.0, 1.0) == pytest.approx(2.0)
    assert heading_error_deg(10.0, 190.0) == pytest.approx(180.0)


def test_summary_counts_failures_as_misses_in_recall_only():
    recs = [_rec("pano", "unknown", "ok", 0.5, 0.5), _rec("pano", "unknown", "ok", 3.0, 4.0),
            _rec("pano", "unknown", "failed", math.nan, math.nan, 0.1)]
    s = summarize("g", recs)
    assert s["count"] == 3 and s["failures"] == 1
    assert s["pos_mean_m"] == pytest.approx(1.75) and s["pos_median_m"] == pytest.approx(1.75)
    assert s["r_1m"] == pytest.approx(1 / 3) and s["r_5m"] == pytest.approx(2 / 3)
    assert s["r_1deg"] == pytest.approx(1 / 3) and s["r_5deg"] == pytest.approx(2 / 3)
    assert s["runtime_median_s"] == pytest.approx(0.5)


def test_groups_by_camera_orientation_and_status():
    recs = [_rec("pano", "known", "ok", 1, 1), _rec("pano", "known", "low_confidence", 9, 9),
            _rec("pinhole", "unknown", "ok", 2, 2)]
    tables = group_tables(recs)
    assert [r["group"] for r in tables["by_camera"]] == ["pano / known", "pinhole / unknown", "all"]
    assert [r["group"] for r in tables["by_status"]] == [
        "pano / known / ok", "pano / known / low_confidence", "pinhole / unknown / ok"]
    md = markdown_table(tables["by_camera"])
    assert md.splitlines()[0].startswith("| group | n | mean m") and len(md.splitlines()) == 5
    # the wide pinholes (the pinhole target's group, docs/evaluation.md) get their own rows; a narrow one and a
    # panorama do not count
    wide = [dataclasses.replace(_rec("pinhole", "unknown", "ok", e, 1), hfov_deg=h)
            for e, h in ((1.0, 90.0), (3.0, 60.0), (50.0, 45.0))]
    rows = {r["group"]: r for r in group_tables(recs + wide)["by_camera"]}
    assert rows["pinhole ≥60° / unknown"]["count"] == 2 and rows["pinhole ≥60° / unknown"]["pos_median_m"] == 2.0
    assert rows["pinhole / unknown"]["count"] == 4 and "pinhole ≥60° / known" not in rows
    out = records_to_json(recs + [_rec("pano", "known", "failed", math.nan, math.nan)], {"model": "x"})
    assert out["photos"][-1]["pos_err_m"] is None and out["config"] == {"model": "x"}


def test_position_error_is_metric_across_crs():
    # truth in UTM 32N, estimate in WGS84: 3 m east of the truth
    from loc2_engine.georef import LocalFrame

    truth = (446966.0, 5212247.0)
    lonlat = LocalFrame("EPSG:32632", truth).local_to_lonlat(np.array([[3.0, 0.0]]))[0]
    res = Result(photo="p", status="ok", crs="EPSG:4326", x=lonlat[0], y=lonlat[1], heading_deg=10.0)
    assert position_error_m(res, truth, "EPSG:32632") == pytest.approx(3.0, abs=1e-3)
    rec = record_for(res, "pano", False, truth, 350.0, "EPSG:32632")
    assert rec.heading_err_deg == pytest.approx(20.0) and rec.orientation == "unknown"


def test_spread_subset():
    assert spread_subset(10, None) == list(range(10))
    assert spread_subset(10, 3)[0] == 0 and spread_subset(10, 3)[-1] == 9
    assert len(spread_subset(100, 7)) == 7


def test_report_lists_failure_reasons():
    from loc2_engine.bench import report

    recs = [_rec("pano", "known", "ok", 1, 1)] + [
        PhotoRecord("p", "pano", "known", "failed", math.nan, math.nan, 0.1, 0.0, error="No usable matches: x")] * 2
    text = report(recs, "t")
    assert text.startswith("### t") and "2 × No usable matches" in text


def test_failure_reasons_group_numbers_together():
    from loc2_engine.bench import failure_reasons

    recs = [PhotoRecord("p", "pano", "known", "failed", math.nan, math.nan, 0.1, 0.0,
                        error=f"The best pose is {d} m from the prior, outside") for d in ("28.0", "26.9")]
    assert failure_reasons(recs) == ["2 × The best pose is # m from the prior, outside"]


def _placed(place, status, pos, confidence):
    return PhotoRecord("p", "pano", "unknown", status, pos, 1.0, 0.5, confidence, place=place)


def test_kinds_of_place_get_their_own_rows():
    recs = [_placed("oldtown", "ok", 1.0, 0.95), _placed("oldtown", "low_confidence", 30.0, 0.1),
            _placed("village", "ok", 2.0, 0.92)]
    rows = {r["group"]: r for r in group_tables(recs)["by_place"]}
    assert rows["oldtown"]["count"] == 2 and rows["oldtown"]["r_5m"] == pytest.approx(0.5)
    assert rows["village"]["pos_median_m"] == pytest.approx(2.0)
    assert rows["oldtown / pano / unknown"]["count"] == 2
    assert "By kind of place" in report(recs)
    one_kind = [dataclasses.replace(r, place="oldtown") for r in recs]
    assert group_tables(one_kind)["by_place"] == []


def test_reliability_bins_and_ok_precision():
    recs = [_placed("", "ok", 1.0, 0.95), _placed("", "ok", 12.0, 0.93), _placed("", "low_confidence", 3.0, 0.15),
            _placed("", "low_confidence", 40.0, 0.05), _placed("", "failed", math.nan, 0.0)]
    table = reliability(recs)
    bins = {b["bin"]: b for b in table["bins"]}
    assert sum(b["count"] for b in table["bins"]) == 4  # the failed photo has no confidence to judge
    assert bins["0.0–0.2"]["count"] == 2 and bins["0.0–0.2"]["hit_rate"] == pytest.approx(0.5)
    assert bins["0.9–1.0"]["mean_confidence"] == pytest.approx(0.94)
    assert table["ok"] == {"count": 2, "within_5m": 0.5, "beyond_10m": 1, "worst_m": 12.0}
    assert records_to_json(recs, {})["reliability"]["ok"]["beyond_10m"] == 1
