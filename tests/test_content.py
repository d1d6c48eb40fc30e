"""A photo with nothing to match (blank, grey, noise) is refused before matching; real scenes pass, dark or
blurred ones too."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from images import scene_like
from loc2_engine.content import check_content
from loc2_engine.errors import PhotoError


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_uniform_frame_is_refused(value):
    frame = np.full((128, 256, 3), value, np.uint8)
    frame[5, 7] = 255 - value  # one odd pixel does not make a scene
    with pytest.raises(PhotoError, match="shows almost nothing"):
        check_content(frame, "blank.jpg")


def test_noise_is_refused():
    noise = np.random.default_rng(0).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    with pytest.raises(PhotoError, match="looks like noise"):
        check_content(noise, "noise.jpg")


def test_scenes_pass_even_dark_or_blurred():
    scene = scene_like(144, 192)
    check_content(scene, "scene.jpg")
    check_content((scene * 0.06).astype(np.uint8), "dark.jpg")  # about 15 grey levels left
    check_content(np.asarray(Image.fromarray(scene).filter(ImageFilter.GaussianBlur(6))), "blurred.jpg")
    with pytest.raises(PhotoError):  # while a blank frame with the same grain is not a scene
        check_content(np.clip(128 + np.random.default_rng(1).normal(0, 4, scene.shape), 0, 255).astype(np.uint8),
                      "grain.jpg")
