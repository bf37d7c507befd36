// 시드로 정해지는 표준 정규 난수. 브라우저에는 torch.Generator 가 없으므로 작은 생성기를 직접 쓴다.
//
//  - 32비트 정수 생성기: mulberry32 (상태 하나를 0x6D2B79F5 씩 더하고 비트를 섞는다)
//  - 균등 난수: u = (정수 + 0.5) / 2³², 그래서 0 < u < 1 (log 0 이 나오지 않는다)
//  - 정규 난수: 박스-뮬러 변환 z₀ = √(−2 ln u₁) cos(2π u₂), z₁ = √(−2 ln u₁) sin(2π u₂)
//
// 같은 알고리즘을 파이썬으로 옮긴 것이 tests_site/live_reference.py 에 있고, 검사가 두 쪽의 수열이 같은지 본다.
// 그래서 같은 시드의 x_T 를 파이썬의 패키지 샘플러에 넣어 브라우저의 결과와 비교할 수 있다.

/** mulberry32: 시드(부호 없는 32비트 정수)에서 시작하는 32비트 정수 수열. */
export function mulberry32(seed) {
  let state = seed >>> 0;
  return function nextUint32() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** 표준 정규 난수를 차례로 내주는 흐름. take(n) 은 다음 n 개를 Float32Array 로 돌려준다. */
export class NormalStream {
  constructor(seed) {
    this.next = mulberry32(seed);
    this.spare = null; // 박스-뮬러는 두 개씩 만든다: 남은 하나
  }

  uniform() {
    return (this.next() + 0.5) / 4294967296;
  }

  normal() {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const angle = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(angle);
    return r * Math.cos(angle);
  }

  take(n) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }
}
