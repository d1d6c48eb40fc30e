#!/usr/bin/env bash
# `make bench`: the benchmark of the default model on the synthetic bench preset (docs/evaluation.md).
#   1. data/bench is generated with `loc2 synth data/bench --preset bench` when it has no manifest;
#   2. `loc2 bench` with mono depth (the default pipeline), truth depth, plane depth, and the ablation
#      without scale estimation (rigid fit) with mono and with truth depth;
#   3. the mono run again with the same orthophotos warped to EPSG:3857 and EPSG:4326
#      (scripts/reproject_dataset.py -> $DATA-3857, $DATA-4326): the pose must not depend on the raster CRS;
#   4. the mono run again on two copies with another look (scripts/restyle_dataset.py: "graded" colours,
#      and "degraded": hue cross-talk, half-resolution orthophotos, vignetting, strong JPEG), a stand-in
#      for another renderer or camera;
#   5. the mono run is repeated with the sampling and RANSAC seeds 0, 1, 2 pooled (mono-3seeds): one seed's
#      medians move by tens of per cent on 100 photos;
#   6. the mono run on the pinhole photos cropped to 16:9 and to 3:4 portrait (scripts/reframe_dataset.py),
#      phone framings that the model's 4:3 input does not have;
#   7. the mono run on the bench preset's towns and photos (seed 0, generated beside $DATA) under other suns:
#      from anywhere in the sky (`loc2 synth --sun-azimuth 0,360`; the training towns' sun is always in the
#      southern half) and with the photos lit by a sun of their own (`--photo-sun independent`), as real
#      photos and orthophotos are taken at different times; and under any weather ("light": sun from
#      anywhere, 10-75 degrees high, half the skies overcast, drawn apart for the photos and the orthophoto);
#   8. the mono run on the heldout preset (`loc2 synth --preset heldout`, generated beside $DATA as
#      $DATA-heldout): kinds of place the training presets never have (old town, village, retail district;
#      both networks of the default model were fine-tuned on old towns and retail districts of other seeds,
#      never on villages),
#      in other UTM zones and both hemispheres, sun anywhere and apart for the photos, some overcast skies,
#      a phone-like camera: the generalization benchmark (docs/synth.md); seed 0 ($DATA-heldout) and seed 1
#      ($DATA-heldout-s1, other towns), 96 photos each: one seed alone moves by several metres; and seed 0's
#      towns on hills, with leaning orthophotos, lenses and other road markings ($DATA-heldout-hills,
#      `--preset heldout-hills`); and a kind of place that neither training nor heldout has, dense
#      East-Asian alleys, in heldout-hills' world ($DATA-unseen, `--preset unseen`, 96 photos);
#   9. each run writes out/bench-<name>.json (per-photo records + tables) and out/bench-<name>.md, and
#      prints its markdown tables.
# Environment: BENCH_DATA (default data/bench), BENCH_OUT (default out), BENCH_LIMIT (photos per run,
# spread over the manifest; default all), BENCH_MODEL (default "default"), PY (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${BENCH_DATA:-data/bench}
OUT=${BENCH_OUT:-out}
MODEL=${BENCH_MODEL:-default}
export PROJ_DATA=${PROJ_DATA:-/usr/share/proj}
LIMIT=()
if [[ -n "${BENCH_LIMIT:-}" ]]; then LIMIT=(--limit "$BENCH_LIMIT"); fi

mkdir -p "$OUT"
if [[ ! -f "$DATA/manifest.csv" ]]; then
    "$PY" -m loc2_engine synth "$DATA" --preset bench --workers 2
fi

run() {
    local name=$1
    shift
    echo "== $name =="
    "$PY" -m loc2_engine bench "$DATA" --model "$MODEL" --json "$OUT/bench-$name.json" "${LIMIT[@]}" "$@" \
        | tee "$OUT/bench-$name.md"
}

run mono --depth mono
run mono-3seeds --depth mono --seeds 3
run truth --depth truth
run plane --depth plane
run mono-noscale --depth mono --no-scale
run truth-noscale --depth truth --no-scale

for crs in 3857 4326; do
    if [[ ! -f "$DATA-$crs/manifest.csv" ]]; then
        "$PY" scripts/reproject_dataset.py "$DATA" "$DATA-$crs" "EPSG:$crs"
    fi
    DATA="$DATA-$crs" run "mono-$crs" --depth mono
done

for look in graded degraded; do
    if [[ ! -f "$DATA-$look/manifest.csv" ]]; then
        "$PY" scripts/restyle_dataset.py "$DATA" "$DATA-$look" "$look"
    fi
    DATA="$DATA-$look" run "mono-$look" --depth mono
done

for aspect in 16x9 3x4; do
    if [[ ! -f "$DATA-$aspect/manifest.csv" ]]; then
        "$PY" scripts/reframe_dataset.py "$DATA" "$DATA-$aspect" "${aspect/x/:}"
    fi
    DATA="$DATA-$aspect" run "mono-$aspect" --depth mono
done

declare -A SUN_OPTS=([anysun]="--sun-azimuth 0,360" [photosun]="--photo-sun independent"
                     [light]="--sun-azimuth 0,360 --sun-elevation 10,75 --overcast 0.5 --photo-sun independent")
for sun in anysun photosun light; do
    if [[ ! -f "$DATA-$sun/manifest.csv" ]]; then
        read -ra opts <<< "${SUN_OPTS[$sun]}"
        "$PY" -m loc2_engine synth "$DATA-$sun" --preset bench --workers 2 "${opts[@]}"
    fi
    DATA="$DATA-$sun" run "mono-$sun" --depth mono
done

declare -A HELDOUT_OPTS=([heldout]="--preset heldout" [heldout-s1]="--preset heldout --seed 1"
                         [heldout-hills]="--preset heldout-hills" [unseen]="--preset unseen")
for held in heldout heldout-s1 heldout-hills unseen; do
    if [[ ! -f "$DATA-$held/manifest.csv" ]]; then
        read -ra opts <<< "${HELDOUT_OPTS[$held]}"
        "$PY" -m loc2_engine synth "$DATA-$held" --workers 2 "${opts[@]}"
    fi
    DATA="$DATA-$held" run "mono-$held" --depth mono
done
