# 빠른 시작: `make book` (사이트 빌드), `make test` (모든 검사). 둘 다 필요한 설치를 스스로 한다.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ddpm_ko-installed
export PYTHONHASHSEED ?= 0
# OpenMP 의 기다리는 방식: 두 작업을 나란히 돌려 스레드가 코어보다 많을 때(make test 의 unit ∥ reader)만 PASSIVE 로
# 둔다. 바쁘게 기다리는 스레드가 남의 코어를 태우지 않게 한다 (부하가 걸린 2코어에서 수십 배 차이). 혼자 도는 책 빌드는
# 기본값이 낫다: PASSIVE 는 연산마다 잠든 스레드를 깨우므로 작은 배치의 신경망 호출이 두 배쯤 느려진다
# (이 기계, 기본 신경망, 스레드 2: 이미지 4장 한 번 94 ms 대 43 ms, 16장 152 ms 대 95 ms).
PARALLEL_OMP := OMP_WAIT_POLICY=PASSIVE

.PHONY: book test unit unit-then-book lint setup browser reader clean bench-peers

$(STAMP): requirements.txt constraints-cpu.txt pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

setup: $(STAMP)

## "브라우저에서 샘플링" 쪽의 onnxruntime-web: web/package-lock.json 이 고정한 그대로 받는다 (빌드가 사이트로 복사한다)
WEB_STAMP := web/node_modules/.package-lock.json
$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm 이 없다: sudo apt-get install npm / npm is missing: sudo apt-get install npm" >&2; exit 1; }
	npm ci --prefix web --ignore-scripts --no-audit --no-fund
	@touch $@

## 사이트를 _build/html 에 빌드한다. 노트북은 독자 설정으로 실행되고, 경고나 실패한 셀이 있으면 빌드가 실패한다.
book: $(STAMP) $(WEB_STAMP)
	env -u MPLBACKEND $(VENV)/bin/jupyter-book build . -W -n --keep-going

## 린트 → (단위 검사 → 책 빌드(독자 설정)) ∥ 독자처럼 모든 장 실행(nbval, 빠른 모드) → 브라우저 검사
## 단위 검사와 "독자처럼 모든 장 실행"은 서로 다른 파일을 쓰므로 나란히 돌린다 (단위 검사는 스레드 하나, 독자 실행의
## 준비는 주로 pip 설치라서 2코어에서 둘을 합친 시간이 차례로 돌린 시간보다 몇 분 짧다). 노트북의 nbval 검사는
## 독자 실행이 한다 (빈 임시 디렉터리, 독자용 커널). 저장소 안의 경로는 책 빌드가 모든 장을 실행하며 검사한다.
test: $(STAMP)
	$(MAKE) lint
	$(MAKE) -j2 --output-sync=target reader unit-then-book
	$(PY) -m pytest -q tests_site

## 단위 검사가 끝나면 (독자 실행이 아직 도는 동안) 책 빌드를 시작한다: 독자 실행의 마지막 몇 분 동안 남는 코어를 쓴다
unit-then-book: unit
	$(MAKE) book

## 단위 검사만 (몇 분): 패키지를 고친 뒤 먼저 돌린다
unit: $(STAMP)
	$(PARALLEL_OMP) $(PY) -m pytest -q tests

## ruff 린트와 포맷 검사 (몇 초). 고치려면 .venv/bin/ruff check --fix … 와 .venv/bin/ruff format … (설정: pyproject.toml)
LINT_PATHS := src tests tests_site tests_reader benchmarks scripts
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

## 모든 장을 저장소 밖의 독자처럼 실행한다: Colab 과 같은 의존성만 든 .reader/venv, 장마다 빈 임시 디렉터리,
## 첫 셀의 pip install (원본은 이 작업 트리), 빠른 모드, Hugging Face datasets 경로(로컬 캐시, 오프라인 모드).
reader: $(STAMP)
	$(PARALLEL_OMP) $(PY) tests_reader/run_chapters.py

## 빌드된 사이트(_build/html)를 헤드리스 Chromium 으로 검사한다
browser: $(STAMP)
	$(PY) -m pytest -q tests_site

## 벤치마크가 견주는 다른 구현(denoising-diffusion-pytorch 2.1.1·0.11.2, ema-pytorch, diffusers)을 고정한 판으로
## benchmarks/.peers 에 설치한다 (venv 와 torch 는 그대로). 벤치마크 스크립트의 --external 기본 디렉터리다
bench-peers: $(STAMP)
	$(PY) benchmarks/install_peers.py

clean:
	rm -rf _build
