"""시각화 도구: 이미지 격자, 샘플링 궤적 GIF, matplotlib 한글 글꼴.

이미지 텐서는 이 패키지 어디서나 ``[-1, 1]`` 범위의 ``(B, C, H, W)`` 로 다룬다.
화면에 그리거나 파일로 쓸 때에만 ``[0, 255]`` 의 ``uint8`` ``(…, H, W, C)`` 로 바꾼다.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "to_uint8",
    "make_grid",
    "save_grid",
    "save_gif",
    "use_korean_font",
]


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[-1, 1]`` 범위의 ``(B, C, H, W)`` 이미지를 ``uint8`` ``(B, H, W, C)`` 배열로 바꾼다.

    채널 축은 ``reshape`` 가 아니라 ``permute`` 로 옮긴다. ``reshape`` 로 (C, H, W)를
    (H, W, C)로 바꾸면 RGB 이미지의 픽셀이 뒤섞인다(Annotated Diffusion 노트북의 버그).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"이미지는 (B, C, H, W) 모양이어야 한다 / expected (B, C, H, W), got {tuple(images.shape)}")
    x = images.detach().float().cpu().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """이미지 묶음을 한 장의 격자 ``uint8`` 배열 ``(H', W', C)`` 로 붙인다.

    ``images`` 는 ``[-1, 1]`` 범위의 ``(B, C, H, W)`` 텐서이거나 이미 ``uint8`` 인
    ``(B, H, W, C)`` 배열이다. ``nrow`` 는 한 줄의 이미지 수(기본: √B 올림).
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        arr = images if images.ndim == 4 else images[None]
    else:
        arr = to_uint8(images)
    b, h, w, c = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    ncol = math.ceil(b / nrow)
    grid = np.full((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def _to_pil(grid: np.ndarray):
    from PIL import Image

    if grid.shape[-1] == 1:
        return Image.fromarray(grid[..., 0], mode="L")
    return Image.fromarray(grid)


def save_grid(
    images: torch.Tensor | np.ndarray, path: str | os.PathLike, nrow: int | None = None, scale: int = 1
) -> Path:
    """이미지 격자를 PNG로 저장하고 경로를 돌려준다. ``scale`` 배로 (최근접 보간) 키운다."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = _to_pil(make_grid(images, nrow=nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
    return path


def save_gif(
    frames: Sequence[torch.Tensor] | torch.Tensor,
    path: str | os.PathLike,
    nrow: int | None = None,
    duration_ms: int = 60,
    hold_last_ms: int = 1500,
    max_frames: int = 100,
    scale: int = 2,
) -> Path:
    """샘플링 궤적(각 프레임이 ``(B, C, H, W)``)을 반복 재생되는 GIF로 저장한다.

    프레임이 ``max_frames`` 보다 많으면 고르게 솎아 내되 마지막 프레임(완성된 이미지)은
    반드시 넣고, 그 프레임을 ``hold_last_ms`` 동안 보여 준다.
    """
    from PIL import Image

    if isinstance(frames, torch.Tensor):
        if frames.ndim != 5:
            raise ValueError(
                f"궤적 텐서는 (T, B, C, H, W) 모양이어야 한다 / expected (T, B, C, H, W), got {tuple(frames.shape)}"
            )
        frames = list(frames)
    frames = list(frames)
    if not frames:
        raise ValueError("GIF로 만들 프레임이 없다 / no frames to write")
    if len(frames) > max_frames:
        idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in sorted(set(idx.tolist()))]
    images = []
    for f in frames:
        img = _to_pil(make_grid(f, nrow=nrow)).convert("P") if f.shape[-3] == 3 else _to_pil(make_grid(f, nrow=nrow))
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        images.append(img)
    durations = [duration_ms] * (len(images) - 1) + [hold_last_ms]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    return path


_KOREAN_FAMILIES = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Malgun Gothic", "AppleGothic")
#: U+2212 를 더한 NanumGothic 의 글꼴 이름
MINUS_FAMILY = "NanumGothic Minus"


def _nanum_candidates() -> list[Path]:
    files: list[Path] = []
    # koreanize-matplotlib 은 NanumGothic 을 함께 배포한다. 패키지를 import 하면
    # Python 3.12+ 에서 distutils 를 찾으므로, import 하지 않고 글꼴 파일 위치만 찾는다.
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            files += sorted(Path(loc, "fonts").glob("NanumGothic.ttf"))
    files += sorted(Path("/usr/share/fonts/truetype/nanum").glob("NanumGothic.ttf"))
    return files


def _font_with_minus(src: Path) -> Path | None:
    """NanumGothic 에 마이너스 기호(U+2212) 글리프를 더한 사본을 캐시에 만든다.

    NanumGothic 에는 U+2212 가 없어서, 글꼴 대체가 되지 않는 mathtext (로그 축 눈금
    $10^{-2}$ 등) 에서 마이너스가 네모로 나온다. '+' 의 가로 폭과 '-' 의 두께로 가로 막대를
    그려 넣는다. 실패하면 ``None``.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ddpm_ko" / "NanumGothicMinus.ttf"
    if cache.is_file():
        return cache
    try:
        from fontTools.pens.ttGlyphPen import TTGlyphPen
        from fontTools.ttLib import TTFont

        font = TTFont(str(src))
        cmap = font.getBestCmap()
        glyf = font["glyf"]
        plus, hyphen = glyf[cmap[0x2B]], glyf[cmap[0x2D]]
        plus.recalcBounds(glyf)
        hyphen.recalcBounds(glyf)
        pen = TTGlyphPen(glyf)
        pen.moveTo((plus.xMin, hyphen.yMin))
        pen.lineTo((plus.xMin, hyphen.yMax))
        pen.lineTo((plus.xMax, hyphen.yMax))
        pen.lineTo((plus.xMax, hyphen.yMin))
        pen.closePath()
        glyf["minus_ddpm"] = pen.glyph()  # glyf 표의 글리프 순서에도 덧붙는다
        if "minus_ddpm" not in font.getGlyphOrder():
            font.setGlyphOrder(list(glyf.glyphOrder))
        font["hmtx"]["minus_ddpm"] = font["hmtx"][cmap[0x2B]]
        for table in font["cmap"].tables:
            if table.isUnicode():
                table.cmap[0x2212] = "minus_ddpm"
        for rec in font["name"].names:
            if rec.nameID in (1, 4, 16):
                rec.string = MINUS_FAMILY
            elif rec.nameID == 6:
                rec.string = MINUS_FAMILY.replace(" ", "-")
        font["maxp"].numGlyphs = len(font.getGlyphOrder())
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        font.save(str(tmp))
        os.replace(tmp, cache)
        return cache
    except Exception:  # fontTools 가 없거나 글꼴 구조가 예상과 다르면 대체 목록만 쓴다
        return None


def _register_fonts() -> list[str]:
    """쓸 수 있는 한글 글꼴 파일을 matplotlib에 등록하고 글꼴 이름 목록을 돌려준다."""
    from matplotlib import font_manager

    candidates: list[Path] = []
    nanum = _nanum_candidates()
    if nanum:
        patched = _font_with_minus(nanum[0])
        if patched is not None:
            candidates.append(patched)
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates += sorted(Path(loc, "fonts").glob("NanumGothic*.ttf"))
    for d in ("/usr/share/fonts/truetype/nanum", "/usr/share/fonts/opentype/noto"):
        candidates += sorted(Path(d).glob("NanumGothic*.ttf")) + sorted(Path(d).glob("NotoSansCJK*.tt*"))
    for f in candidates:
        try:
            font_manager.fontManager.addfont(str(f))
        except (OSError, RuntimeError):
            continue
    available = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in (MINUS_FAMILY, *_KOREAN_FAMILIES) if name in available]


def use_korean_font() -> str:
    """matplotlib 이 한글과 마이너스 기호(U+2212)를 모두 그리도록 글꼴을 설정한다.

    NanumGothic 에는 U+2212 글리프가 없다. ``axes.unicode_minus`` 를 끄는 대신 두 가지를 한다.
    (1) 마이너스 글리프를 더한 NanumGothic 사본("NanumGothic Minus")을 캐시에 만들어 쓴다 —
    로그 축 눈금처럼 글꼴 대체가 되지 않는 mathtext 도 마이너스를 그린다.
    (2) 글꼴 대체 목록 ``[한글 글꼴, DejaVu Sans]`` 을 써서 다른 빠진 글리프는 DejaVu Sans 로 그린다.
    설정한 한글 글꼴 이름을 돌려주고, 한글 글꼴이 하나도 없으면 설치 방법을 담은
    ``RuntimeError`` 를 낸다.
    """
    import matplotlib

    names = _register_fonts()
    if not names:
        raise RuntimeError(
            "한글 글꼴을 찾지 못했다. `pip install koreanize-matplotlib` 또는 "
            "`apt-get install fonts-nanum` 으로 설치하라 / no Korean font found: "
            "install koreanize-matplotlib or fonts-nanum"
        )
    matplotlib.rcParams["font.family"] = [names[0], "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = True
    return names[0]
