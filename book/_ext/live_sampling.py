""""브라우저에서 샘플링" 쪽(book/live_sampling.md)이 쓰는 파일을 빌드된 사이트에 넣는 작은 Sphinx 확장.

HTML 빌드가 끝나면 ``_static/live/`` 에 다음을 더한다. 어느 것도 저장소에 커밋하지 않는다.

* ``ort/``: onnxruntime-web 의 WASM 실행기. ``web/package.json`` 이 버전을 고정하고(``web/package-lock.json``
  이 무결성 해시를 고정한다) ``npm ci --prefix web`` (``make book`` 이 부른다)이 받아 둔
  ``web/node_modules/onnxruntime-web/dist`` 에서 세 파일만 복사한다:
  ``ort.wasm.min.mjs`` (자바스크립트 API, WASM 만), ``ort-wasm-simd-threaded.mjs`` 와 ``.wasm`` (실행기 본체),
  그리고 출처와 라이선스를 적은 ``NOTICE.txt``.
  설치된 버전이 ``web/package.json`` 의 버전과 다르면 경고한다(``-W`` 빌드에서는 실패).
* ``unet.onnx`` 와 ``unet.json``: 책의 사전 학습 모델(EMA U-Net)을 패키지의 내보내기
  (``ddpm_ko.onnx_export.export_onnx``, ``ddpm-ko export --format onnx`` 와 같다)로 만든 것. 내보내기는
  20~30 초 걸리므로 체크포인트·torch·내보내기 코드의 해시를 열쇠로 ``<doctrees>/live_sampling/`` 에 캐시한다.
* ``unet_cond.onnx`` 와 ``unet_cond.json``: 같은 방법으로 내보낸 클래스 조건부 모델(``pretrained-conditional``,
  11장, 입력 ``labels`` 가 하나 더 있다). 쪽은 독자가 클래스를 고를 때에만 이 파일을 받는다. 패키지에 조건부 모델이
  아직 없고 ``$DDPM_KO_PRETRAINED_CONDITIONAL`` 도 없으면 경고 없이 건너뛴다 (쪽은 클래스를 고르면 그렇다고 알린다).

그리고 그 쪽에만 ``live/app.js`` (ES 모듈)와 ``live/live.css`` 를 넣는다.

``_config.yml`` 의 ``sphinx.local_extensions`` 에 ``live_sampling: book/_ext`` 로 켠다. 설정값:
``live_sampling_page`` (기본 ``book/live_sampling``), ``live_sampling_checkpoint`` (기본 ``pretrained``),
``live_sampling_conditional_checkpoint`` (기본 ``pretrained-conditional``, 빈 문자열이면 싣지 않는다),
``live_sampling_web_dir`` (기본 ``web``, 책 뿌리 기준).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: web/node_modules/onnxruntime-web/dist 에서 사이트로 복사하는 파일 (WASM 실행기만, WebGPU·WebGL 판은 싣지 않는다)
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_PACKAGE = "onnxruntime-web"


def _warn(message: str) -> None:
    logger.warning(message, type="live_sampling", subtype="assets")


def _pinned_version(web_dir: Path) -> str | None:
    try:
        deps = json.loads((web_dir / "package.json").read_text(encoding="utf-8")).get("dependencies", {})
    except (OSError, ValueError):
        return None
    return deps.get(ORT_PACKAGE)


def _copy_runtime(web_dir: Path, dest: Path) -> str | None:
    """고정한 버전의 onnxruntime-web 파일을 ``dest`` 로 복사하고 그 버전을 돌려준다 (실패하면 경고하고 None)."""
    pinned = _pinned_version(web_dir)
    package = web_dir / "node_modules" / ORT_PACKAGE
    how = f"`npm ci --prefix {web_dir.name}` (make book 이 한다) / run `npm ci --prefix {web_dir.name}` (make book does)"
    if pinned is None:
        _warn(f"{web_dir / 'package.json'} 에 {ORT_PACKAGE} 버전이 없다 / no pinned {ORT_PACKAGE} version there")
        return None
    try:
        manifest = json.loads((package / "package.json").read_text(encoding="utf-8"))
        installed = manifest["version"]
    except (OSError, ValueError, KeyError):
        _warn(f"{ORT_PACKAGE} {pinned} 이 {package} 에 없다: {how}")
        return None
    if installed != pinned:
        _warn(f"{package} 의 {ORT_PACKAGE} 는 {installed} 인데 web/package.json 은 {pinned} 을 고정했다 / "
              f"installed {ORT_PACKAGE} {installed} differs from the pinned {pinned}: {how}")
        return None
    dest.mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        src = package / "dist" / name
        if not src.is_file():
            _warn(f"{src} 가 없다 (onnxruntime-web {installed} 의 파일 구성이 바뀌었나?) / missing file: {how}")
            return None
        shutil.copyfile(src, dest / name)
    # 함께 싣는 제3자 파일의 출처와 라이선스 (npm 패키지에는 LICENSE 파일이 따로 없다)
    repo = manifest.get("repository")
    (dest / "NOTICE.txt").write_text(
        f"{ORT_PACKAGE} {installed} (npm), license: {manifest.get('license', '?')}\n"
        f"{manifest.get('homepage') or (repo.get('url') if isinstance(repo, dict) else repo) or ''}\n"
        f"files: {', '.join(ORT_FILES)} from node_modules/{ORT_PACKAGE}/dist\n", encoding="utf-8")
    return installed


def _export_key(checkpoint: Path) -> str:
    import torch

    import ddpm_ko.onnx_export as onnx_export

    h = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(torch.__version__.encode())
    h.update(Path(onnx_export.__file__).read_bytes())
    return h.hexdigest()[:16]


def conditional_weights_missing() -> bool:
    """패키지에 조건부 사전 학습 모델이 아직 없고 ``$DDPM_KO_PRETRAINED_CONDITIONAL`` 도 없는가 (그러면 싣지 않는다)."""
    import os

    from ddpm_ko.pretrained import PRETRAINED_CONDITIONAL_ENV, PRETRAINED_CONDITIONAL_NAME, shipped_file

    return not os.environ.get(PRETRAINED_CONDITIONAL_ENV) and not shipped_file(PRETRAINED_CONDITIONAL_NAME).is_file()


def _export_model(app: Sphinx, ckpt: str, dest: Path, stem: str) -> bool:
    """체크포인트 ``ckpt`` 를 ONNX 로 내보내(캐시가 있으면 그것을) ``dest/<stem>.onnx`` 와 ``<stem>.json`` 으로 둔다."""
    try:
        from ddpm_ko.checkpoint import resolve_checkpoint_path
        from ddpm_ko.onnx_export import export_onnx, require_onnx, sidecar_path
        from ddpm_ko.pretrained import CHECKPOINT_NAMES, resolve_checkpoint_name

        require_onnx()
        if ckpt in CHECKPOINT_NAMES:
            source = resolve_checkpoint_name(ckpt)
        else:
            source = resolve_checkpoint_path(Path(app.srcdir) / ckpt)
        cache = Path(app.doctreedir) / "live_sampling" / f"{stem}-{_export_key(source)}.onnx"
        if not (cache.is_file() and sidecar_path(cache).is_file()):
            logger.info("[live_sampling] ONNX 로 내보내는 중 / exporting the U-Net to ONNX: %s", source.name)
            for old in cache.parent.glob(f"{stem}-*"):
                old.unlink()
            export_onnx(source, cache)
    except Exception as e:  # noqa: BLE001 — 어떤 실패든 한 줄 경고로 알린다 (-W 에서는 빌드 실패)
        _warn(f"U-Net({ckpt})을 ONNX 로 내보내지 못했다 / could not export the U-Net ({ckpt}) to ONNX: "
              f"{type(e).__name__}: {e}")
        return False
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache, dest / f"{stem}.onnx")
    shutil.copyfile(sidecar_path(cache), dest / f"{stem}.json")
    return True


def _install(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    if app.config.live_sampling_page not in app.env.found_docs:
        return
    dest = Path(app.outdir) / "_static" / "live"
    web_dir = Path(app.srcdir) / app.config.live_sampling_web_dir
    version = _copy_runtime(web_dir, dest / "ort")
    exported = _export_model(app, app.config.live_sampling_checkpoint, dest, "unet")
    cond = app.config.live_sampling_conditional_checkpoint
    if cond == "pretrained-conditional" and conditional_weights_missing():
        for stale in (dest / "unet_cond.onnx", dest / "unet_cond.json"):  # 앞선 빌드가 남긴 파일을 싣지 않는다
            stale.unlink(missing_ok=True)
        logger.info("[live_sampling] 패키지에 조건부 모델이 아직 없어 unet_cond.onnx 는 싣지 않는다 / "
                    "no conditional model in the package yet: skipping unet_cond.onnx")
    elif cond:
        _export_model(app, cond, dest, "unet_cond")
    if version and exported:
        size = (dest / "unet.onnx").stat().st_size
        logger.info("[live_sampling] onnxruntime-web %s 와 unet.onnx (%.1f MB) 를 _static/live 에 넣었다", version,
                    size / 1e6)


def _page_assets(app: Sphinx, pagename: str, templatename: str, ctx: dict, doctree: Any) -> None:
    """그 쪽에만 app.js (ES 모듈)와 live.css 를 넣는다."""
    if pagename != app.config.live_sampling_page:
        return
    app.add_css_file("live/live.css")
    app.add_js_file("live/app.js", type="module")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("live_sampling_page", "book/live_sampling", "html", [str])
    app.add_config_value("live_sampling_checkpoint", "pretrained", "html", [str])
    app.add_config_value("live_sampling_conditional_checkpoint", "pretrained-conditional", "html", [str])
    app.add_config_value("live_sampling_web_dir", "web", "html", [str])
    # offline_assets 가 같은 사건에서 script_files 목록을 새로 만들기 전에 더해야 하므로 먼저 돈다 (기본 500)
    app.connect("html-page-context", _page_assets, priority=400)
    app.connect("build-finished", _install)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
