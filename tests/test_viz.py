"""시각화 도구 검사: uint8 변환(채널 순서), 격자, 움직이는 GIF, 한글 글꼴."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pytest
import torch

from ddpm_ko.viz import make_grid, save_gif, save_grid, to_uint8, use_korean_font


def test_to_uint8_permutes_channels():
    """RGB 채널마다 다른 값을 넣고 (B, H, W, C) 로 바꾼 결과가 화소별로 맞는지.

    reshape 로 (C, H, W) → (H, W, C) 를 하면 채널이 섞여 이 검사가 실패한다.
    """
    h, w = 3, 5
    rgb = torch.empty(2, 3, h, w)
    rgb[:, 0] = -1.0  # R → 0
    rgb[:, 1] = 0.0  # G → 128
    rgb[:, 2] = 1.0  # B → 255
    rgb[1, 0, 2, 4] = 1.0  # 한 화소만 빨강을 켠다
    out = to_uint8(rgb)
    assert out.shape == (2, h, w, 3) and out.dtype == np.uint8
    assert out[0].reshape(-1, 3).tolist() == [[0, 128, 255]] * (h * w)
    assert out[1, 2, 4].tolist() == [255, 128, 255]
    assert out[1, 0, 0].tolist() == [0, 128, 255]
    # 무작위 이미지: numpy transpose 로 만든 기대값과 같다
    x = torch.rand(4, 3, 6, 7) * 2 - 1
    expected = np.clip(np.round((x.numpy() + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(to_uint8(x), expected)
    # 대조: reshape 로 바꾼 (잘못된) 결과는 첫 이미지부터 다르다 → 위 검사는 그 버그를 잡는다
    wrong = np.clip(np.round((rgb.numpy() + 1) * 127.5), 0, 255).astype(np.uint8).reshape(2, h, w, 3)
    assert not np.array_equal(wrong, out)


def test_to_uint8_range_and_shapes():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).view(1, 1, 1, 5)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]  # 범위 밖은 자른다
    assert to_uint8(torch.zeros(1, 4, 4)).shape == (1, 4, 4, 1)  # (C, H, W) 한 장
    assert to_uint8(np.zeros((2, 1, 4, 4), np.float32)).shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match="expected"):
        to_uint8(torch.zeros(4, 4))


def test_make_grid_shape_and_placement():
    b, c, h, w, pad = 5, 1, 4, 6, 2
    imgs = torch.stack([torch.full((c, h, w), -1 + 0.4 * i) for i in range(b)])
    grid = make_grid(imgs, nrow=3, padding=pad)
    assert grid.shape == (2 * (h + pad) + pad, 3 * (w + pad) + pad, c)
    assert grid.dtype == np.uint8
    u8 = to_uint8(imgs)
    for i in range(b):
        r, col = divmod(i, 3)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        assert np.array_equal(grid[y : y + h, x : x + w], u8[i])
    assert (grid[:pad] == 255).all()  # 여백은 흰색
    assert (grid[-(h + pad) :, -(w + pad) :] == 255).all()  # 빈 칸(6 번째 자리)도 흰색
    # 기본 nrow = ⌈√B⌉, RGB, 이미 uint8 인 배열
    assert make_grid(torch.zeros(10, 3, 4, 4), padding=0).shape == (3 * 4, 4 * 4, 3)
    assert np.array_equal(make_grid(u8, nrow=3, padding=pad), grid)


def test_save_grid(tmp_path):
    from PIL import Image

    path = save_grid(torch.zeros(4, 1, 8, 8), tmp_path / "sub" / "g.png", nrow=2, scale=3)
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (3 * (2 * 10 + 2), 3 * (2 * 10 + 2))


@pytest.mark.parametrize("channels", [1, 3])
def test_save_gif_is_animated_and_loops(tmp_path, channels):
    from PIL import Image

    n_frames = 6
    # 프레임마다 다른 밝기 (같은 프레임이 이어지면 GIF 인코더가 합쳐 버린다)
    frames = torch.stack([torch.full((4, channels, 8, 8), -1 + 2 * k / (n_frames - 1)) for k in range(n_frames)])
    frames[:, :, :, 0, 0] = 1.0
    path = save_gif(frames, tmp_path / "traj.gif", duration_ms=40, hold_last_ms=500)
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.is_animated
        assert im.n_frames == n_frames
        assert im.info.get("loop") == 0  # 무한 반복
        assert im.size == (2 * (2 * 10 + 2), 2 * (2 * 10 + 2))  # 2×2 격자를 2 배로
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
        assert durations[-1] == 500 and durations[0] == 40
        im.seek(n_frames - 1)
        last = np.asarray(im.convert("L"))
    assert last[10, 10] == 255  # 마지막 프레임은 완성된(흰) 이미지


def test_save_gif_thins_long_trajectories_but_keeps_last_frame(tmp_path):
    from PIL import Image

    frames = [torch.full((1, 1, 4, 4), -1 + 2 * k / 249) for k in range(250)]
    path = save_gif(frames, tmp_path / "long.gif", max_frames=20, scale=1)
    with Image.open(path) as im:
        assert 2 < im.n_frames <= 20
        im.seek(im.n_frames - 1)
        assert np.asarray(im.convert("L"))[3, 3] == 255
    with pytest.raises(ValueError, match="no frames"):
        save_gif([], tmp_path / "empty.gif")
    with pytest.raises(ValueError, match="expected"):
        save_gif(torch.zeros(3, 1, 4, 4), tmp_path / "bad.gif")


def _draw_korean_plot():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([-2, -1, 0, 1], [-0.5, 0.25, -1.5, 1.0], label="손실 곡선")
    ax.set_title("순방향 과정: 노이즈 추가")
    ax.set_xlabel("시각 t (−1 은 음수)")
    ax.legend()
    # 로그 축 눈금 10^{−2} 는 mathtext 로 그려지고, mathtext 는 글꼴 대체를 하지 않는다
    ax2 = ax.twinx()
    ax2.set_yscale("log")
    ax2.plot([-2, -1, 0, 1], [1e-3, 1e-2, 1e-1, 1.0])
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _glyph_problems(caplog) -> list[str]:
    # mathtext 는 빠진 글리프를 경고(warnings)가 아니라 로그(logging)로 알린다
    return [r.getMessage() for r in caplog.records if "glyph" in r.getMessage().lower()]


def test_korean_font_renders_hangul_and_minus_without_missing_glyphs(caplog):
    import matplotlib

    with matplotlib.rc_context():
        name = use_korean_font()
        family = matplotlib.rcParams["font.family"]
        assert family[0] == name
        # 고른 글꼴 파일에 실제로 한글 글리프가 있다
        from matplotlib import font_manager
        from matplotlib.ft2font import FT2Font

        path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
        charmap = FT2Font(path).get_charmap()
        assert all(ord(ch) in charmap for ch in "한글순방향과정"), path
        assert matplotlib.rcParams["axes.unicode_minus"] is True
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with caplog.at_level(logging.WARNING):
                png = _draw_korean_plot()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert _glyph_problems(caplog) == []


def test_missing_glyph_check_is_able_to_fail(caplog):
    """대조 실험: 위 검사가 잡으려는 문제가 실제로 경고·로그로 드러나는지.

    (1) 한글 글꼴 없이 그리면 'missing from font' 경고가 난다.
    (2) U+2212 가 없는 원래 NanumGothic 을 첫 글꼴로 쓰면 로그 축(mathtext)의 마이너스가 빠졌다는 로그가 남는다.
    """
    import matplotlib

    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UserWarning, match="missing from font"):
                _draw_korean_plot()
    from matplotlib import font_manager

    if "NanumGothic" not in {f.name for f in font_manager.fontManager.ttflist}:
        with matplotlib.rc_context():
            use_korean_font()  # 글꼴을 등록한다
    if "NanumGothic" not in {f.name for f in font_manager.fontManager.ttflist}:
        pytest.skip("원래 NanumGothic 글꼴이 없어 (2) 대조 실험을 할 수 없다")
    with matplotlib.rc_context({"font.family": ["NanumGothic", "DejaVu Sans"]}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with caplog.at_level(logging.WARNING):
                _draw_korean_plot()
    assert any("2212" in m for m in _glyph_problems(caplog))
