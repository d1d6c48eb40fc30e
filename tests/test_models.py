"""Models: Loc² heads (official names and sizes), default matcher, registry, safe weight loading, mono depth."""

import math
import pickle

import numpy as np

import pytest
import torch

from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.errors import ModelError
from loc2_engine.models import MODEL_REGISTRY, load_model
from loc2_engine.models.base import cell_centres_local, grid_centres_uv, letterbox_image, load_state_file
from loc2_engine.models.heads import LinearAttentionLayer, PositionEncodingSine, ProjectionHead
from loc2_engine.models.mono_depth import MonoDepthNet, build_mono, predict_depth, save_mono
from loc2_engine.models.small import SmallMatcher, build
from loc2_engine.train.trainer import export_matcher


def test_official_head_sizes_and_state_dict_names():
    head = ProjectionHead(1024, [512, 256, 128], num_att_layers=3, nhead=8, positional_encoding=True)
    assert sum(p.numel() for p in head.parameters()) == 10_769_920  # docs/method.md §2.1
    keys = set(head.state_dict())
    assert len(keys) == 81
    for k in ("resblocks.0.conv1.weight", "resblocks.0.bn1.num_batches_tracked", "resblocks.2.shortcut.weight",
              "att_layer.layers.2.q_proj.weight", "att_layer.layers.0.mlp.0.weight", "att_layer.layers.1.mlp.2.weight",
              "att_layer.layers.0.norm2.bias", "final_block.conv2.weight", "final_block.bn2.running_var"):
        assert k in keys, k
    assert "final_block.shortcut.weight" not in keys
    assert not any("pos" in k or k.endswith(".bias") and "norm" not in k and "bn" not in k for k in keys)
    assert head.state_dict()["att_layer.layers.0.mlp.0.weight"].shape == (256, 256)


def test_linear_attention_matches_its_formula():
    torch.manual_seed(0)
    layer = LinearAttentionLayer(16, 4).eval()
    x = torch.randn(2, 10, 16)
    q = torch.nn.functional.elu(layer.q_proj(x)).view(2, 10, 4, 4) + 1
    k = torch.nn.functional.elu(layer.k_proj(x)).view(2, 10, 4, 4) + 1
    v = layer.v_proj(x).view(2, 10, 4, 4)
    num = torch.einsum("blhd,bmhd,bmhv->blhv", q, k, v)
    den = torch.einsum("blhd,bmhd->blh", q, k)[..., None]
    msg = layer.norm1(layer.merge((num / den).reshape(2, 10, 16)))
    expected = x + layer.norm2(layer.mlp(torch.cat([x, msg], -1)))
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_positional_encoding_pattern_and_not_in_state_dict():
    pe = PositionEncodingSine(8, (4, 6))
    assert len(pe.state_dict()) == 0
    out = pe(torch.zeros(1, 8, 4, 6))
    # position (row 2, col 3) -> x = 4, y = 3 (positions start at 1); k = 0 has div = 1
    assert math.isclose(out[0, 0, 2, 3].item(), math.sin(4.0), abs_tol=1e-6)
    assert math.isclose(out[0, 3, 2, 3].item(), math.cos(3.0), abs_tol=1e-6)
    assert math.isclose(out[0, 4, 2, 3].item(), math.sin(4.0 * 0.01), abs_tol=1e-6)


def test_grids_follow_pixel_conventions():
    uv = grid_centres_uv(2, 3, 8)
    assert uv[0].tolist() == [3.5, 3.5] and uv[5].tolist() == [19.5, 11.5]
    xy = cell_centres_local(56, 56, 4, 0.5)
    # window 224 px, 0.5 m/px: cell (0, 0) centre is pixel (1.5, 1.5) -> x = (2 - 112) / 2, y = (112 - 2) / 2
    assert xy[0].tolist() == [-55.0, 55.0] and xy[-1].tolist() == [55.0, -55.0]


@pytest.fixture(scope="module")
def matcher():
    torch.manual_seed(0)
    return SmallMatcher().eval()


def test_default_matcher_shapes_and_unit_descriptors(matcher):
    with torch.no_grad():
        A = matcher.encode_aerial(torch.rand(2, 3, 224, 224))
        G = matcher.encode_ground(torch.rand(2, 3, 128, 256))
        Gp = matcher.encode_ground(torch.rand(2, 3, 144, 192), "pinhole")
        P = matcher.match(A, G, torch.ones(2, 512, dtype=torch.bool))
    assert A.desc.shape == (2, 64, 56, 56) and A.xy_local.shape == (3136, 2)
    assert G.desc.shape == (2, 64, 16, 32) and G.uv.shape == (512, 2) and Gp.desc.shape == (2, 64, 18, 24)
    assert torch.allclose(A.desc.norm(dim=1), torch.ones(2, 56, 56), atol=1e-4)
    assert P.shape == (2, 3136, 512) and (P >= 0).all()
    assert matcher.aerial_size_m == 112.0
    with pytest.raises(ValueError):
        matcher.encode_ground(torch.rand(1, 3, 100, 200))
    params_mb = sum(p.numel() for p in matcher.parameters()) * 4 / 1e6
    assert params_mb < 30


def test_panorama_backbone_is_roll_equivariant(matcher):
    x = torch.rand(1, 3, 128, 256)
    with torch.no_grad():
        a = matcher.ground_encoder(x, circular=True)
        b = matcher.ground_encoder(torch.roll(x, 16, -1), circular=True)
    assert torch.allclose(torch.roll(a, 2, -1), b, atol=1e-5)


def test_ground_tokens_scale_to_the_camera_and_lift(matcher):
    uv, coef = matcher.ground_tokens(PanoramaCamera(256, 128))
    assert torch.allclose(uv, grid_centres_uv(16, 32, 8))
    uv2, coef2 = matcher.ground_tokens(PanoramaCamera(1024, 512))
    assert torch.allclose(uv2, (uv + 0.5) * 4 - 0.5)
    assert torch.allclose(coef, coef2, atol=1e-5)  # same directions at any resolution
    # horizon row, column just right of centre: forward, slightly right
    cam = PinholeCamera.from_hfov(640, 480, 90.0)
    uv_p, coef_p = matcher.ground_tokens(cam, "z")
    assert uv_p.shape == (18 * 24, 2)
    assert torch.allclose(coef_p[:, 1], torch.ones(18 * 24))  # z-depth: forward coefficient 1


def test_ground_tokens_of_a_letterboxed_photo_read_it_where_it_lies(matcher):
    # a 640 x 360 photo in the 192 x 144 input fills rows 18-126: token rows 0-1 and 16-17 are padding
    cam = PinholeCamera.from_hfov(640, 360, 90.0)
    uv, coef = matcher.ground_tokens(cam, "z", rows=(18, 108))
    full_uv, full_coef = matcher.ground_tokens(PinholeCamera.from_hfov(640, 480, 90.0), "z")
    v = uv[:, 1].reshape(18, 24)
    assert (v[:2] < -0.5).all() and (v[16:] > 359.5).all() and ((v[2:16] > 0) & (v[2:16] < 359)).all()
    assert torch.allclose(uv[:, 0], full_uv[:, 0])  # columns as when filling the input
    # square pixels either way: the same rays as the 4:3 photo's tokens 60 px lower
    assert torch.allclose(uv[:, 1] + 60.0, full_uv[:, 1], atol=1e-4)
    assert torch.allclose(coef, full_coef, atol=1e-5)


def _save_tmp(model, path):
    export_matcher(model, path, {"test": True})
    return path


def test_save_reload_gives_identical_outputs(matcher, tmp_path):
    path = _save_tmp(matcher, tmp_path / "m.safetensors")
    again = load_model(str(path))
    a, g = torch.rand(1, 3, 224, 224), torch.rand(1, 3, 128, 256)
    with torch.no_grad():
        p1 = matcher.match(matcher.encode_aerial(a), matcher.encode_ground(g))
        p2 = again.match(again.encode_aerial(a), again.encode_ground(g))
    assert torch.equal(p1, p2)


def test_confidence_calibration_travels_in_the_weight_file(matcher, tmp_path):
    """scripts/calibrate_confidence.py stores logistic weights in the file's metadata; loading gives them to
    the matcher (the Localizer's pose confidence uses them); a file without one has none."""
    from loc2_engine.confidence import FEATURE_NAMES
    from script_modules import load_script

    path = _save_tmp(matcher, tmp_path / "m.safetensors")
    assert getattr(load_model(str(path)), "confidence_calibration", None) is None
    script = load_script("calibrate_confidence")
    calibration = {"intercept": -1.0, **{k: 0.25 for k in FEATURE_NAMES}}
    script.write_calibration(str(path), calibration)
    again = load_model(str(path))
    assert again.confidence_calibration == calibration
    assert torch.equal(again.dustbin, matcher.dustbin)  # weights untouched


def test_weights_only_plain_state_dict_loads(matcher, tmp_path):
    path = tmp_path / "m.pt"
    torch.save(matcher.state_dict(), path)
    model = build(weights=str(path))
    assert torch.equal(model.dustbin, matcher.dustbin)


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Payload()}, f, protocol=2)
    with pytest.raises(ModelError, match="pickled"):
        load_state_file(path)
    with pytest.raises(ModelError):
        load_model(str(path))
    assert not _Payload.ran


def test_registry_and_errors(tmp_path):
    assert {"default", "loc2-vigor", "loc2-kitti"} <= set(MODEL_REGISTRY)
    assert all(":" in spec.arch for spec in MODEL_REGISTRY.values())
    with pytest.raises(ModelError, match="Unknown model"):
        load_model("no-such-model")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError):
        load_model(str(bad))


def test_mono_depth_predicts_range_with_sky_as_nan(tmp_path):
    torch.manual_seed(0)
    net = MonoDepthNet().eval()
    with torch.no_grad():
        net.out.bias.copy_(torch.tensor([math.log(5.0), -20.0]))  # 5 m, no sky
        net.out.weight.zero_()
    image = np.random.default_rng(0).integers(0, 255, (200, 400, 3), dtype=np.uint8)
    depth = predict_depth(net, image, PanoramaCamera(400, 200))
    assert depth.shape == (200, 400) and depth.dtype == np.float32
    assert np.allclose(depth, 5.0, rtol=1e-4)
    with torch.no_grad():
        net.out.bias[1] = 20.0  # everything sky
    pin = np.zeros((90, 120, 3), np.uint8)
    assert np.isnan(predict_depth(net, pin, PinholeCamera.from_hfov(120, 90, 70.0))).all()
    save_mono(net, tmp_path / "mono.safetensors")
    again = build_mono(str(tmp_path / "mono.safetensors"))
    x = torch.rand(1, 3, 144, 192)
    with torch.no_grad():
        assert torch.equal(net(x)[0], again(x)[0])


def test_mono_depth_of_a_wide_photo_is_its_rows_of_the_letterboxed_input():
    torch.manual_seed(0)
    net = MonoDepthNet().eval()
    H, W = net.input_sizes["pinhole"]
    image = np.random.default_rng(1).integers(0, 255, (108, W, 3), dtype=np.uint8)  # 16:9 at the input width
    boxed, top, rows = letterbox_image(image, (H, W))
    assert (top, rows) == ((H - 108) // 2, 108)
    whole = predict_depth(net, boxed, PinholeCamera.from_hfov(W, H, 70.0))
    depth = predict_depth(net, image, PinholeCamera.from_hfov(W, 108, 70.0))
    assert depth.shape == (108, W)
    np.testing.assert_allclose(depth, whole[top:top + rows], rtol=1e-5)
