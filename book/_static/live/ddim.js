// DDIM 샘플러를 자바스크립트로 옮긴 것 (책의 "브라우저에서 샘플링" 쪽, book/live_sampling.md).
//
// 파이썬 패키지와 같은 정의를 한 줄씩 따른다. 신경망(ε_θ)은 여기 없다: 이 모듈은 순수한 산수이고,
// 신경망은 app.js 가 onnxruntime-web 으로 돌린다.
//
//   스케줄      src/ddpm_ko/schedules.py  linear_beta_schedule, _scaled_range (T ≠ 1000 이면 1000/T 배)
//   버퍼        src/ddpm_ko/diffusion.py  GaussianDiffusion.__init__ (float64 로 계산해 float32 로 저장)
//   시각 고르기  src/ddpm_ko/sampling.py   ddim_timesteps (np.round(np.linspace(T−1, 0, S)))
//   한 단계     src/ddpm_ko/diffusion.py  model_predictions(clip_x0=True) + ddim_step
//
// 코드의 시각 t 는 0..T−1 이고 논문의 t = 1..T 에 해당한다 (패키지와 같다).
// tests_site/test_live_sampling.py 가 이 함수들의 값을 패키지의 값과 비교한다.

/** DDPM 논문의 선형 스케줄 끝값 (T = 1000 기준) */
export const DDPM_BETA_START = 1e-4;
export const DDPM_BETA_END = 0.02;
/** β 의 상한 (schedules.py 의 MAX_BETA) */
export const MAX_BETA = 0.999;

/**
 * 선형 스케줄 β_1..β_T (Float64Array, 인덱스 0 이 논문의 t = 1).
 * T 가 1000 이 아니면 끝값을 1000/T 배 해서 ᾱ_T 가 0 에 가깝게 남게 한다 (Improved DDPM 의 방식).
 */
export function linearBetas(T) {
  const scale = 1000 / T;
  const start = scale * DDPM_BETA_START;
  const end = Math.min(scale * DDPM_BETA_END, MAX_BETA);
  const step = (end - start) / (T - 1);
  const betas = new Float64Array(T);
  for (let i = 0; i < T; i++) betas[i] = start + step * i;
  betas[T - 1] = end;
  return betas;
}

/**
 * 샘플링에 쓰는 스케줄 버퍼. 파이썬처럼 float64 로 계산한 뒤 float32 로 반올림해 저장한다 (Float32Array).
 *   ᾱ_t = ∏_{s≤t} (1 − β_s),  √(1/ᾱ_t),  √(1/ᾱ_t − 1),  √ᾱ_t,  √(1 − ᾱ_t)
 * (마지막 둘은 DPM-Solver++ 의 α_t, σ_t 다: dpm_solver.js)
 */
export function makeSchedule(T, schedule = "linear") {
  if (schedule !== "linear") {
    throw new Error(`이 쪽은 선형 스케줄만 안다 (받은 스케줄: ${schedule})`);
  }
  const betas = linearBetas(T);
  const alphasCumprod = new Float32Array(T);
  const sqrtRecipAlphasCumprod = new Float32Array(T);
  const sqrtRecipm1AlphasCumprod = new Float32Array(T);
  const sqrtAlphasCumprod = new Float32Array(T);
  const sqrtOneMinusAlphasCumprod = new Float32Array(T);
  let abar = 1.0; // float64 누적곱
  for (let t = 0; t < T; t++) {
    abar *= 1.0 - betas[t];
    alphasCumprod[t] = abar;
    sqrtRecipAlphasCumprod[t] = Math.sqrt(1.0 / abar);
    sqrtRecipm1AlphasCumprod[t] = Math.sqrt(1.0 / abar - 1.0);
    sqrtAlphasCumprod[t] = Math.sqrt(abar);
    sqrtOneMinusAlphasCumprod[t] = Math.sqrt(1.0 - abar);
  }
  return {
    T, betas, alphasCumprod, sqrtRecipAlphasCumprod, sqrtRecipm1AlphasCumprod, sqrtAlphasCumprod,
    sqrtOneMinusAlphasCumprod,
  };
}

/** numpy 의 np.round 와 같은 반올림: 정확히 .5 이면 짝수 쪽으로 (Math.round 는 늘 위로 올린다). */
export function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** np.linspace(start, stop, num) 을 numpy 와 같은 순서로 계산한다: y_i = i·step + start, 마지막은 stop. */
export function linspace(start, stop, num) {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = [];
  for (let i = 0; i < num; i++) out.push(i === num - 1 ? stop : i * step + start);
  return out;
}

/**
 * T 개 시각 가운데 steps 개를 고르게 골라 큰 것부터 돌려준다 (늘 T−1 과 0 을 포함).
 * np.linspace(T−1, 0, steps) 를 numpy 와 같은 순서로 계산하고 (y_i = i·step + start, 마지막은 stop),
 * np.round 처럼 반올림한다.
 */
export function ddimTimesteps(T, steps) {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`샘플링 스텝 수는 1 이상의 정수여야 한다: ${steps}`);
  if (steps > T) throw new Error(`샘플링 스텝 수(${steps})가 T(${T})보다 클 수 없다`);
  if (steps === 1) return [T - 1];
  return linspace(T - 1, 0, steps).map(roundHalfEven);
}

/**
 * 신경망 출력 ε̂ 으로 x̂_0 을 추정하고 [−1, 1] 로 자른 뒤, 자른 x̂_0 에 맞게 ε̂ 을 다시 계산한다.
 *   x̂_0 = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε̂           (9장 식 ch9-eq-x0hat)
 *   ε̂   = (√(1/ᾱ_t) x_t − x̂_0) / √(1/ᾱ_t − 1)      (잘랐으면)
 * diffusion.py 의 model_predictions(prediction_type="eps", clip_x0=True) 와 같다.
 */
export function predictX0(sched, xt, epsModel, t, clip = true) {
  const a = sched.sqrtRecipAlphasCumprod[t];
  const b = sched.sqrtRecipm1AlphasCumprod[t];
  const n = xt.length;
  const x0 = new Float32Array(n);
  const eps = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let x0i = a * xt[i] - b * epsModel[i];
    if (clip) {
      x0i = Math.min(1, Math.max(-1, x0i));
      eps[i] = (a * xt[i] - x0i) / b;
    } else {
      eps[i] = epsModel[i];
    }
    x0[i] = x0i;
  }
  return { x0, eps };
}

/**
 * DDIM 의 한 단계 (Song et al. 2021 식 12, 9장 식 ch9-eq-ddim-step): 시각 t 에서 tPrev (< t, −1 이면 끝) 로.
 *   σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)
 *   x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z
 * z 는 η > 0 이고 마지막 단계가 아닐 때만 쓴다 (호출하는 쪽이 표준 정규 난수를 넘긴다).
 * 돌려주는 것: { xPrev, x0 } (x0 은 이 단계에서 신경망이 짐작한 완성 그림 x̂_0).
 */
export function ddimStep(sched, xt, epsModel, t, tPrev, eta, z = null, clip = true) {
  const { x0, eps } = predictX0(sched, xt, epsModel, t, clip);
  const aT = sched.alphasCumprod[t];
  const aPrev = tPrev >= 0 ? sched.alphasCumprod[tPrev] : 1.0;
  const sigma = eta * Math.sqrt(((1 - aPrev) / (1 - aT)) * (1 - aT / aPrev));
  const dirCoef = Math.sqrt(Math.max(0, 1 - aPrev - sigma * sigma));
  const x0Coef = Math.sqrt(aPrev);
  const addNoise = eta > 0 && tPrev >= 0;
  if (addNoise && (!z || z.length !== xt.length)) throw new Error("η > 0 이면 x_t 와 같은 크기의 노이즈 z 가 필요하다");
  const xPrev = new Float32Array(xt.length);
  for (let i = 0; i < xt.length; i++) {
    let v = x0Coef * x0[i] + dirCoef * eps[i];
    if (addNoise) v += sigma * z[i];
    xPrev[i] = v;
  }
  return { xPrev, x0 };
}

/** 샘플링이 끝나면 패키지의 sample(clip_x0=True) 처럼 마지막 이미지를 [−1, 1] 로 자른다. */
export function clampImage(x) {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.min(1, Math.max(-1, x[i]));
  return out;
}

/** [−1, 1] 값을 화면의 0..255 로: viz.to_uint8 과 같이 ((x + 1)·127.5) 를 반올림한다 (torch.round 처럼 .5 는 짝수로). */
export function toByte(v) {
  const c = Math.min(1, Math.max(-1, v));
  return roundHalfEven((c + 1) * 127.5);
}
