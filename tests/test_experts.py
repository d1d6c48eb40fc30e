"""Per-camera-kind experts: a matcher file holding a second network for one camera kind (`Matcher.add_expert`,
scripts/add_expert.py), and the pipeline matching each photo with its kind's network."""

import json
import math

import numpy as np
import pytest
import torch

from loc2_engine.aerial import AerialWindow
from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.errors import ModelError
from loc2_engine.exif import ExifInfo
from loc2_engine.georef import LocalFrame
from loc2_engine.ground import GroundImage
from loc2_engine.models import load_model
from loc2_engine.models.base import load_state_file
from loc2_engine.models.small import SmallMatcher
from loc2_engine.pipeline import Localizer
from loc2_engine.probabilities import match_probabilities
from loc2_engine.train.trainer import Trainer, TrainConf, export_matcher
from script_modules import load_script


def _network(seed, **conf):
    torch.manual_seed(seed)
    return SmallMatcher(conf).eval()


def _file(tmp_path, name, seed, **conf):
    path = tmp_path / f"{name}.safetensors"
    export_matcher(_network(seed, **conf), path, {"turn": True, "seed": seed})
    return str(path)


@pytest.fixture
def files(tmp_path):
    """(general, expert, general with the expert for panoramas) weight files."""
    general, expert = _file(tmp_path, "general", 1), _file(tmp_path, "expert", 2)
    both = str(tmp_path / "both.safetensors")
    load_script("calibrate_confidence").write_calibration(general, {"intercept": 0.5})
    assert load_script("add_expert").main([general, "--kind", "pano", "--expert", expert, "--out", both]) == 0
    return general, expert, both


def _outputs(matcher, kind):
    torch.manual_seed(7)
    H, W = matcher.ground_input_size_for(kind)
    a, g = torch.rand(1, 3, matcher.aerial_size_px, matcher.aerial_size_px), torch.rand(1, 3, H, W)
    with torch.no_grad():
        return matcher.match(matcher.encode_aerial(a), matcher.encode_ground(g, kind))


def test_the_file_keeps_the_general_network_and_adds_the_expert(files):
    general, expert, both = files
    loaded = load_model(both)
    assert loaded.expert_kinds == ("pano",)
    assert loaded.for_kind("pinhole") is loaded
    assert torch.equal(_outputs(loaded, "pinhole"), _outputs(load_model(general), "pinhole"))
    assert torch.equal(_outputs(loaded.for_kind("pano"), "pano"), _outputs(load_model(expert), "pano"))
    assert not torch.equal(_outputs(loaded, "pano"), _outputs(loaded.for_kind("pano"), "pano"))
    training = json.loads(load_state_file(both)[1]["training"])
    assert training["seed"] == 1 and training["experts"]["pano"]["seed"] == 2
    # settings stay the general network's; its calibration was fitted on other matches and is dropped
    assert loaded.aerial_quarters == 4 and getattr(loaded, "confidence_calibration", None) is None


def test_experts_of_another_geometry_or_architecture_are_refused(tmp_path, files):
    general = load_model(files[0])
    other = _network(3)
    other.aerial_size_px = general.aerial_size_px * 2
    with pytest.raises(ModelError, match="aerial_size_px"):
        general.add_expert("pano", other)
    with pytest.raises(ModelError, match="no camera kind"):
        general.add_expert("fisheye", _network(3))
    with pytest.raises(SystemExit, match="another architecture"):
        load_script("add_expert").main([files[0], "--kind", "pano", "--expert", _file(tmp_path, "wide", 4, desc_dim=32),
                                        "--out", str(tmp_path / "x.safetensors")])


def _world(matcher, kind, seed):
    """A random aerial window and a photo of ``kind`` fitted to ``matcher``'s input, every token valid."""
    rng = np.random.default_rng(seed)
    n = matcher.aerial_size_px
    H, W = matcher.ground_input_size_for(kind)
    camera = PanoramaCamera(W, H) if kind == "pano" else PinholeCamera.from_hfov(W, H, 70.0)
    window = AerialWindow(rng.integers(0, 255, (n, n, 3), dtype=np.uint8), np.ones((n, n), bool),
                          matcher.aerial_gsd, LocalFrame("EPSG:32633", (500000.0, 5000000.0)), "one window")
    photo = GroundImage("p.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8), camera, ExifInfo(), kind)
    valid = torch.ones(math.prod(matcher.token_grid(kind)), dtype=torch.bool)
    return window, photo.fitted(W, H), valid


def test_the_pipeline_matches_each_photo_with_its_kinds_network(files):
    """One Localizer, one window: a pinhole photo gets the general network's P, then a panorama the expert's,
    exactly as Localizers of either network alone, so neither the encoders nor the window's cached features
    are mixed up between the two networks (all test-time ensembles on)."""
    general, expert, both = files
    loc = Localizer(model=both, depth="truth", device="cpu")
    for kind, alone in (("pinhole", general), ("pano", expert), ("pinhole", general)):
        window, ground_in, valid = _world(loc.matcher, kind, 1)
        alone_loc = Localizer(model=alone, depth="truth", device="cpu")
        expected = match_probabilities(alone_loc.features, window, ground_in, valid, alone_loc.config.matching)
        P = match_probabilities(loc.features, window, ground_in, valid, loc.config.matching)
        assert torch.equal(P, expected), kind


def test_fine_tuning_a_file_with_experts_starts_from_its_general_network(files, tmp_path):
    general, _, both = files
    trainer = Trainer([], str(tmp_path / "ft.safetensors"), str(tmp_path / "ckpt"), TrainConf(), init=both)
    assert trainer.model.expert_kinds == ()
    reference = load_model(general).state_dict()
    assert trainer.model.state_dict().keys() == reference.keys()
    assert all(torch.equal(v, reference[k]) for k, v in trainer.model.state_dict().items())


def test_an_extracted_expert_is_the_network_that_was_added(tmp_path, files):
    general, expert, both = files
    out = str(tmp_path / "extracted.safetensors")
    assert load_script("extract_expert").main([both, "--kind", "pano", "--out", out]) == 0
    assert torch.equal(_outputs(load_model(out), "pano"), _outputs(load_model(expert), "pano"))
    assert json.loads(load_state_file(out)[1]["training"])["seed"] == 2
    with pytest.raises(SystemExit, match="no pinhole expert"):
        load_script("extract_expert").main([both, "--kind", "pinhole", "--out", out])
