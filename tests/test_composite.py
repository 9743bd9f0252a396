"""Compositing and backgrounds: exact where alpha is 0 or 255, backgrounds fill the frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import webcolors

from deepbg_live.colors import DEFAULT_COLOR, parse_color
from deepbg_live.composite import (
    BlurBackground,
    ColorBackground,
    ImageBackground,
    VideoBackground,
    blend,
    composite,
    cover_fit,
    mask_view,
    with_alpha,
)
from deepbg_live.errors import UserError

H, W = 72, 128


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def background() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_alpha_255_keeps_the_frame_pixel_exactly(frame, background):
    out = composite(frame, np.full((H, W), 255, np.uint8), background)
    np.testing.assert_array_equal(out, frame)


def test_alpha_0_shows_the_background_pixel_exactly(frame, background):
    out = composite(frame, np.zeros((H, W), np.uint8), background)
    np.testing.assert_array_equal(out, background)


def test_partial_alpha_blends_within_one_level(frame, background):
    alpha = np.random.default_rng(2).integers(0, 256, (H, W), dtype=np.uint8)
    a = alpha[..., None].astype(np.float64) / 255
    expected = frame * a + background * (1 - a)
    out = composite(frame, alpha, background)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.abs(out - expected).max() <= 1.0


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_blend_works_for_masks_colour_and_alpha_pictures_alike(channels):
    rng = np.random.default_rng(0)
    shape = (20, 30) if channels is None else (20, 30, channels)
    front, back = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    alpha[0], alpha[1] = 0, 255
    out = blend(front, back, alpha)
    assert out.shape == front.shape and out.dtype == np.uint8
    assert np.array_equal(out[0], back[0]) and np.array_equal(out[1], front[1])
    weight = (alpha.astype(float) / 255) if channels is None else (alpha.astype(float) / 255)[..., None]
    exact = front * weight + back * (1 - weight)
    assert np.abs(out - exact).max() <= 1


def test_blending_onto_black_never_brightens_the_front():
    front = np.arange(256, dtype=np.uint8).reshape(16, 16)
    alpha = np.full((16, 16), 200, np.uint8)
    assert (blend(front, np.zeros_like(front), alpha) <= front).all()


def test_composite_returns_a_fresh_array_each_time(frame, background):
    alpha = np.full((H, W), 255, np.uint8)
    first = composite(frame, alpha, background)
    composite(background, alpha, frame)
    np.testing.assert_array_equal(first, frame)


def test_mismatched_sizes_are_rejected(frame, background):
    with pytest.raises(ValueError):
        composite(frame, np.zeros((H + 1, W), np.uint8), background)


@pytest.mark.parametrize(
    ("text", "bgr"),
    [
        ("#00ff00", (0, 255, 0)),
        ("#FF0000", (0, 0, 255)),
        ("#f80", (0, 136, 255)),
        ("green", (0, 128, 0)),
        ("Blue", (255, 0, 0)),
        ("white", (255, 255, 255)),
        ("grey", (128, 128, 128)),
        ("gray", (128, 128, 128)),
        ("orange", (0, 165, 255)),
        (" purple ", (128, 0, 128)),
        ("chartreuse", (0, 255, 127)),
        ("Rebecca Purple", (153, 51, 102)),
        ("light-goldenrod-yellow", (210, 250, 250)),
    ],
)
def test_colours_parse_to_bgr(text, bgr):
    assert parse_color(text) == bgr


@pytest.mark.parametrize("text", ["xyz", "#12345", "#gggggg", "", "00ff00ff"])
def test_a_bad_colour_says_what_formats_work(text):
    with pytest.raises(UserError, match="#RRGGBB"):
        parse_color(text)


def test_every_css_colour_name_is_accepted():
    rgb = {name: tuple(webcolors.name_to_rgb(name)) for name in webcolors.names(webcolors.CSS3)}
    rgb["rebeccapurple"] = (102, 51, 153)  # CSS Color 4's addition
    assert len(rgb) == 148
    for name, (red, green, blue) in rgb.items():
        assert parse_color(name) == (blue, green, red)


def test_a_bad_colour_name_points_at_the_css_names():
    with pytest.raises(UserError, match="148 CSS colour names"):
        parse_color("chartroose")


def test_default_colour_background_is_the_default_colour(frame):
    out = ColorBackground().render(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert tuple(out[0, 0]) == parse_color(DEFAULT_COLOR)


def test_colour_background_accepts_a_bgr_tuple(frame):
    assert tuple(ColorBackground((10, 20, 30)).render(frame)[5, 5]) == (10, 20, 30)


def test_cover_fit_fills_the_frame_and_crops_the_centre():
    # A wide image (4:1) onto a 16:9 frame: scaled to the frame's height, sides cropped.
    image = np.zeros((100, 400, 3), np.uint8)
    image[:, :100] = 255  # left band
    image[:, 300:] = 128  # right band
    out = cover_fit(image, 160, 90)  # scale 0.9: the visible part is x = 111..289
    assert out.shape == (90, 160, 3)
    assert (out == 0).all()  # only the middle of the image is visible


def test_image_background_is_cover_fitted_not_squashed(tmp_path, frame):
    image = np.zeros((300, 300, 3), np.uint8)  # square image, 16:9 frame
    cv2.circle(image, (150, 150), 50, (255, 255, 255), -1)
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), image)
    out = ImageBackground(path).render(frame)
    assert out.shape == frame.shape
    # The circle stays round: its width and height in the output are about equal.
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width - height) <= 3


def test_missing_background_image_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="missing.png"):
        ImageBackground(tmp_path / "missing.png")


def test_unreadable_background_image_is_a_user_error(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png"):
        ImageBackground(path)


def write_clip(path, colours: list[tuple[int, int, int]], size=(64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    assert writer.isOpened()
    for colour in colours:
        writer.write(np.full((size[1], size[0], 3), colour, np.uint8))
    writer.release()


def test_video_background_plays_in_a_loop(tmp_path, frame):
    path = tmp_path / "clip.mp4"
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
    write_clip(path, colours)
    video = VideoBackground(path)
    try:
        shown = [video.render(frame) for _ in range(7)]
    finally:
        video.close()
    assert all(img.shape == frame.shape for img in shown)
    dominant = [int(np.argmax(img.reshape(-1, 3).mean(axis=0))) for img in shown]
    assert dominant == [2, 1, 0, 2, 1, 0, 2]  # red, green, blue, then around again


def test_missing_video_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.mp4"):
        VideoBackground(tmp_path / "nope.mp4")


def test_video_without_frames_is_a_user_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(UserError, match="empty.mp4"):
        VideoBackground(path)


def test_blur_background_is_a_blurred_frame(frame):
    out = BlurBackground(31).render(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frame).mean() > 20  # random noise is smoothed away
    assert abs(float(out.mean()) - float(frame.mean())) < 10  # but keeps the overall colour


@pytest.mark.parametrize("kernel", [0, -5])
def test_blur_kernel_must_be_positive(kernel):
    with pytest.raises(UserError, match="blur"):
        BlurBackground(kernel)


def test_with_alpha_adds_the_alpha_as_a_fourth_channel(frame):
    alpha = np.random.default_rng(3).integers(0, 256, (H, W), dtype=np.uint8)
    bgra = with_alpha(frame, alpha)
    assert bgra.shape == (H, W, 4)
    np.testing.assert_array_equal(bgra[:, :, :3], frame)
    np.testing.assert_array_equal(bgra[:, :, 3], alpha)


def test_mask_view_shows_the_person_white():
    alpha = np.zeros((H, W), np.uint8)
    alpha[:, :10] = 255
    view = mask_view(alpha)
    assert view.shape == (H, W, 3) and view.dtype == np.uint8
    assert (view[:, :10] == 255).all() and (view[:, 10:] == 0).all()
