"""Road markings of several countries (synth/town.py: `Markings`, `draw_markings`, `_paint_roads`): the paint
they lay on straight streets, and that towns without a marking style keep the default markings exactly."""

import dataclasses
import hashlib

import numpy as np
import pytest
from shapely.geometry import LineString, box
from shapely.ops import transform, unary_union

from loc2_engine.synth import town as T
from loc2_engine.synth.presets import PRESETS

ORIGIN = (465000.0, 5245000.0)   # UTM 32N
MARKING_COLOURS = (T.WHITE, T.YELLOW, T.WORN_WHITE, T.WORN_YELLOW)


class _EveryCrossing:
    """A town stream that skips no crossing (`_paint_roads` skips an approach where it draws < 0.25)."""

    def random(self):
        return 1.0


def _street_town(roads, markings=None, seed=1) -> T.Town:
    """A 120 m town of the given roads, painted (surfaces and markings) with ``markings``."""
    town = T.Town("m", "downtown", seed, "EPSG:32632", ORIGIN, 120.0, 180.0, 45.0, T.default_style("downtown"),
                  roads=roads, markings=markings)
    T._paint_roads(town, _EveryCrossing())
    return town


def _paint_of(town, colours) -> object:
    """Union of the paint entries of ``colours``."""
    return unary_union([e[0] for e in town.paint if e[1] in colours])


def _drawn(style, want=lambda m: True):
    """The markings of ``style`` of the first town seed whose draw satisfies ``want``."""
    for seed in range(50):
        m = T.draw_markings((style,), T.marking_streams(seed)[0])
        if want(m):
            return m
    raise AssertionError(f"no {style} draw in 50 seeds satisfies the condition")


def test_a_north_american_centre_line_is_yellow_doubled_on_a_wide_street_and_dashed_on_a_narrower_one():
    m = _drawn("north_america")
    wide, narrow = LineString([(-60, -30), (60, -30)]), LineString([(-60, 30), (60, 30)])
    town = _street_town([T.Road(wide, 12.0, 3.0), T.Road(narrow, 8.0, 2.0)], m)
    yellow = _paint_of(town, (T.YELLOW,))
    assert not yellow.is_empty and m.rgb == T.WHITE
    # across the wide street: two lines of 0.10 m, 0.10 m apart, either side of the centre
    cut = yellow.intersection(LineString([(7.3, -36), (7.3, -24)]))
    parts = sorted(cut.geoms, key=lambda g: g.bounds[1])
    assert [round(g.length, 3) for g in parts] == [0.1, 0.1]
    assert parts[0].bounds[1] == pytest.approx(-30.15) and parts[1].bounds[3] == pytest.approx(-29.85)
    # along the narrow one: single 3 m dashes, 9 m gaps (10 ft / 30 ft)
    dashes = yellow.intersection(narrow)
    assert [round(g.length, 6) for g in dashes.geoms][:4] == [3.0] * 4
    starts = sorted(g.bounds[0] for g in dashes.geoms)
    assert np.allclose(np.diff(starts), 12.0)
    # no white paint on either centre line
    assert _paint_of(town, (T.WHITE,)).intersection(wide.union(narrow)).length == 0.0


def test_european_centre_dashes_and_gaps_are_as_specified_along_a_straight_street():
    seen = set()
    for pattern in ((3.0, 6.0), (6.0, 12.0)):
        m = _drawn("europe", lambda m: (m.dash, m.gap) == pattern)
        assert m.centre_w == 0.12 and m.centre_rgb == T.WHITE
        street = LineString([(-60, 4), (60, 4)])
        centre = _paint_of(_street_town([T.Road(street, 9.0, 2.5)], m), (T.WHITE,)).intersection(street)
        pieces = sorted(centre.geoms, key=lambda g: g.bounds[0])
        lengths = [g.length for g in pieces]
        gaps = [b.bounds[0] - a.bounds[2] for a, b in zip(pieces, pieces[1:])]
        assert len(pieces) >= 120 // sum(pattern) - 1
        assert np.allclose(lengths, m.dash) and np.allclose(gaps, m.gap)
        seen.add(pattern)
    assert seen == {(3.0, 6.0), (6.0, 12.0)}


def test_an_unmarked_town_paints_no_lines_and_keeps_everything_else_of_its_seed():
    plain = T.make_town("u", "downtown", 3, "EPSG:32632", ORIGIN, 120.0)
    bare = T.make_town("u", "downtown", 3, "EPSG:32632", ORIGIN, 120.0, marking_styles=("unmarked",))
    assert bare.markings.style == "unmarked"
    assert any(e[1] == T.WHITE for e in plain.paint)
    assert not any(e[1] in MARKING_COLOURS for e in bare.paint)
    assert [e[1] for e in bare.paint] == [e[1] for e in plain.paint if e[1] != T.WHITE]
    # the markings draw from a stream of their own: buildings, trees, cars and lamps stay those of the seed
    assert (bare.buildings, bare.trees, bare.blocks) == (plain.buildings, plain.trees, plain.blocks)


def test_traffic_keeps_right_or_left_at_the_stop_bar():
    """A stop bar spans the approach lane only: right of the centre line in North America, left in Japan."""
    along, across = LineString([(-60, 0), (60, 0)]), LineString([(0, -60), (0, 60)])
    for style, lane_y in (("north_america", 1.0), ("japan", -1.0)):
        m = _drawn(style)
        town = _street_town([T.Road(along, 10.0, 2.0), T.Road(across, 10.0, 2.0)], m)
        white = _paint_of(town, (T.WHITE,))
        # beyond the crossing (centred 9 m out) on the +x approach (traffic heading -x), inside the edge lines
        x0 = 9.0 + m.crossing_len / 2 + (m.line_w if m.crossing != "bars" else 0.0) + 0.05
        lane, other = box(x0, 0.2, 20, 4.4), box(x0, -4.4, 20, -0.2)
        if lane_y < 0:
            lane, other = other, lane
        assert white.intersection(lane).area > 0.4 * 0.1, style
        assert white.intersection(other).area == 0.0, style


def test_worn_paint_is_faded_patchy_and_leaves_residential_streets_bare():
    m = _drawn("worn")
    fresh = dataclasses.replace(m, rgb=T.WHITE, centre_rgb=T.WHITE, keep=1.0, bare_below=0.0)
    main, side = LineString([(-60, -30), (60, -30)]), LineString([(-60, 30), (60, 30)])
    roads = [T.Road(main, 10.0, 2.5), T.Road(side, 8.0, 2.0)]
    worn, new = _street_town(roads, m), _street_town(roads, fresh)
    assert {e[1] for e in worn.paint} & set(MARKING_COLOURS) <= {T.WORN_WHITE, T.WORN_YELLOW}
    faded = _paint_of(worn, (T.WORN_WHITE, T.WORN_YELLOW))
    assert faded.intersection(box(-60, 20, 60, 40)).is_empty  # the 8 m street: bare
    kept = faded.area / _paint_of(new, (T.WHITE,)).intersection(box(-60, -40, 60, -20)).area
    assert 0.3 < kept < 0.9 and 0.45 <= m.keep <= 0.8


def test_without_marking_styles_the_paint_is_that_of_the_default_markings_exactly():
    """The digest of the paint of straight, crossing and curved streets (one without a centre line), pinned
    from the generator before marking styles existed: presets without them render as before. Coordinates are
    rounded to a micrometre first: numpy's sin and cos differ in the last bit between its AVX2 and AVX-512
    code paths, so unrounded bytes depend on the CPU."""
    xs = np.linspace(-70, 70, 141)
    roads = [T.Road(LineString([(-70, -10), (70, 5)]), 12.0, 3.0), T.Road(LineString([(5, -70), (-8, 70)]), 8.0, 2.0),
             T.Road(LineString(np.c_[xs, 35 + 8 * np.sin(xs / 20)]), 9.0, 2.5),
             T.Road(LineString([(40, -70), (40, 70)]), 7.0, 2.0, centre_dashed=False)]
    town = T.Town("m", "downtown", 1, "EPSG:32632", ORIGIN, 120.0, 180.0, 45.0, T.default_style("downtown"),
                  roads=roads)
    rng = np.random.default_rng(0)
    T._paint_roads(town, rng)
    digest = hashlib.sha256()
    for entry in town.paint:
        digest.update(transform(lambda x, y: (np.round(x, 6), np.round(y, 6)), entry[0]).wkb)
        digest.update(repr(entry[1:]).encode())
    assert len(town.paint) == 25
    assert digest.hexdigest() == "ceead26ca4a9d50a5118dc07f8783e29b002153064675c5f3ad176d72a701cd5"
    assert rng.random() == 0.8631789223498866  # the town's stream drew as before
    assert T.make_town("d", "downtown", 3, "EPSG:32632", ORIGIN, 100.0).markings is None


def test_only_train_places_heldout_hills_and_unseen_draw_marking_styles_and_unknown_names_are_refused():
    assert sorted(name for name, p in PRESETS.items() if p.marking_styles) == ["heldout-hills", "train-places", "unseen"]
    assert set(PRESETS["train-places"].marking_styles) == set(T.MARKING_STYLES)
    drawn = {T.draw_markings(T.MARKING_STYLES, T.marking_streams(s)[0]).style for s in range(60)}
    assert drawn == set(T.MARKING_STYLES)
    with pytest.raises(ValueError, match="'germany'"):
        T.draw_markings(("europe", "germany"), np.random.default_rng(0))
