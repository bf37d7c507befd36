#!/usr/bin/env bash
# 새 기계에서 책을 빌드하고 검사하는 데 필요한 것을 모두 설치한다.
#  - Debian 패키지(root일 때): Fashion-MNIST, 한글 글꼴, 헤드리스 Chromium
#  - 가상환경 .venv 와 pip 패키지(CPU torch는 constraints-cpu.txt로 묶는다)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
CONSTRAINTS=${TORCH_CONSTRAINTS:-constraints-cpu.txt}
APT_PACKAGES="dataset-fashion-mnist fonts-nanum chromium"

missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
  else
    echo "[setup] 경고: Debian 패키지가 없다:$missing" >&2
    echo "[setup]   sudo apt-get install$missing  로 설치하라 (없어도 패키지는 쓸 수 있지만 일부 검사가 건너뛰어진다)." >&2
    echo "[setup] warning: missing Debian packages:$missing — install them with: sudo apt-get install$missing" >&2
  fi
fi

# 책의 "브라우저에서 샘플링" 쪽은 npm 으로 onnxruntime-web 을 받는다 (make book 의 `npm ci --prefix web`).
# nodejs 를 다른 곳(NodeSource 등)에서 설치했다면 npm 이 이미 있으므로 Debian 패키지를 더하지 않는다.
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] apt-get install npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null; }
  else
    echo "[setup] 경고: npm 이 없다 — sudo apt-get install npm / warning: npm is missing (needed by make book)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] $PYTHON -m venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# requirements.txt 는 `-e .[dev]` 하나다: 이 checkout 의 편집 가능 설치와 pyproject.toml 의 [dev] 묶음
echo "[setup] pip install -r requirements.txt (-e .[dev]; constraints: $CONSTRAINTS)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" -r requirements.txt 2>&1 \
  | grep -v -E "^WARNING: Location .* is ignored" || true
"$VENV/bin/python" -c "import torch, ddpm_ko; print('[setup] torch', torch.__version__, '| ddpm_ko', ddpm_ko.__version__)"
