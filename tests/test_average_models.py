"""scripts/average_models.py: the uniform average of matcher weight files of one architecture."""

import json

import pytest
import torch

from loc2_engine.models import load_model
from loc2_engine.models.base import load_state_file
from loc2_engine.models.small import SmallMatcher
from loc2_engine.train.trainer import export_matcher
from script_modules import load_script


def _model_file(tmp_path, name, seed, **conf):
    torch.manual_seed(seed)
    model = SmallMatcher(conf)
    path = tmp_path / f"{name}.safetensors"
    export_matcher(model, path, {"step": seed})
    return str(path), model.state_dict()


def test_average_is_the_mean_of_the_weights_and_loads(tmp_path):
    a, sa = _model_file(tmp_path, "a", 1)
    b, sb = _model_file(tmp_path, "b", 2)
    out = tmp_path / "avg.safetensors"
    assert load_script("average_models").main([a, b, "--out", str(out)]) == 0
    state, meta = load_state_file(out)
    for k, v in state.items():
        if v.is_floating_point():
            assert torch.allclose(v, (sa[k] + sb[k]) / 2, atol=1e-6), k
    assert [m["step"] for m in json.loads(meta["training"])["average_of"]] == [1, 2]
    assert load_model(str(out)).conf == load_model(a).conf


def test_other_architectures_are_refused(tmp_path):
    a, _ = _model_file(tmp_path, "a", 1)
    b, _ = _model_file(tmp_path, "b", 2, desc_dim=32)
    with pytest.raises(SystemExit, match="another architecture"):
        load_script("average_models").main([a, b, "--out", str(tmp_path / "avg.safetensors")])
