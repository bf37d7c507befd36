#!/usr/bin/env bash
# ruff 의 자동 고침과 포매터를 저장소 전체에 한 번 적용한다 (이슈 12). 패키지 재구성(src/, tests/)을 합친 뒤 한 번
# 실행하고, 바뀐 것을 검토해 커밋한다. 그 뒤로는 `make lint` 가 같은 상태를 지킨다.
# Applies ruff's fixes and formatter to the whole repository once (issue 12): run after merging the package
# restructuring, review, commit; from then on `make lint` keeps it that way.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF=${RUFF:-.venv/bin/ruff}
# Makefile 의 LINT_PATHS 와 같다
PATHS=(src tests tests_site tests_reader benchmarks scripts)

# 1. 안전한 고침: import 정렬(I001), 쓰지 않는 import·noqa (F401, RUF100), 따옴표 친 주석(UP037), collections.abc (UP035) …
"$RUFF" check --fix --exit-zero --quiet "${PATHS[@]}"
# 2. ruff 가 "안전하지 않다"고 하는 고침 가운데 여기서는 뜻이 같음을 확인한 규칙만:
#    RUF005 [a] + b → [a, *b] (둘 다 리스트), RUF046 int(len(x)), int(math.ceil(x)) → 이미 int,
#    RUF059 쓰지 않는 풀어낸 변수 → _이름, F841 쓰지 않는 변수에 대입 (오른쪽 호출은 남는다)
"$RUFF" check --fix --unsafe-fixes --exit-zero --quiet --select RUF005,RUF046,RUF059,F841 "${PATHS[@]}"
# 3. 포매터
"$RUFF" format "${PATHS[@]}"
# 4. 남은 것은 손으로 고친다 (예: typing.ContextManager → contextlib.AbstractContextManager, UP035)
"$RUFF" check "${PATHS[@]}" && "$RUFF" format --check "${PATHS[@]}" && echo "[apply_ruff] make lint 통과 / make lint passes"
