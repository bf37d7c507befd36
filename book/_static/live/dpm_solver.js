// DPM-Solver++(2M) (Lu et al. 2022): 확산 ODE 의 2차 다단계 풀이법, 데이터 예측(x̂_0) 형태. 그리고 그 SDE 판.
//
// 패키지의 src/ddpm_ko/solvers.py 와 GaussianDiffusion.dpm_solver_step 을 한 줄씩 옮긴 것이다.
// 기호는 DDPM 의 ᾱ_t 로 쓴다.
//   α_t = √ᾱ_t,  σ_t = √(1 − ᾱ_t),  λ_t = log(α_t/σ_t)   (t 가 커지면 λ 는 줄어든다)
//   한 단계 t → s 의 간격  h = λ_s − λ_t > 0
//   1차 (= DDIM, η = 0):  x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂_0(t)
//   2차 (2M):             x̂_0 자리에  D = (1 + 1/(2r)) x̂_0(t) − 1/(2r) x̂_0(앞 시각),  r = h_앞 / h
//   SDE 판 (SDE-DPM-Solver++(2M)): 노이즈 z ~ N(0, I) 를 받아
//                         x_s = (σ_s/σ_t) e^{−h} x_t + α_s (1 − e^{−2h}) D + σ_s √(1 − e^{−2h}) z
// 마지막 단계(s = −1, σ = 0)는 두 판 모두 x̂_0 그 자체다.
// tests_site/test_live_sampling.py 가 패키지에 DPM-Solver++ 가 있으면 시각과 샘플을 그것과 비교한다.

import { linspace, predictX0, roundHalfEven } from "./ddim.js";

/** 시각 t 의 α_t, σ_t, λ_t (t = −1 은 σ = 0, λ = +∞ 인 끝). 버퍼는 float32 값을 그대로 쓴다 (패키지와 같다). */
export function alphaSigmaLambda(sched, t) {
  if (t < 0) return { alpha: 1, sigma: 0, lambda: Infinity };
  const alpha = sched.sqrtAlphasCumprod[t];
  const sigma = sched.sqrtOneMinusAlphasCumprod[t];
  return { alpha, sigma, lambda: Math.log(alpha) - Math.log(sigma) };
}

/** np.interp(x, xp, fp): xp 가 커지는 순서일 때의 선형 보간 (numpy 와 같은 식 slope·(x − xp_j) + fp_j). */
function interp(x, xp, fp) {
  const n = xp.length;
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid] <= x) lo = mid;
    else hi = mid;
  }
  const slope = (fp[lo + 1] - fp[lo]) / (xp[lo + 1] - xp[lo]);
  return slope * (x - xp[lo]) + fp[lo];
}

/** Karras 등(2022)의 σ 간격 지수 ρ (solvers.KARRAS_RHO 와 같다). */
export const KARRAS_RHO = 7.0;

/**
 * 신경망을 부를 시각 steps 개 (큰 것부터, T−1 과 0 포함). solvers.solver_timesteps 와 같다.
 *   "time"   — t 에서 고르게 (ddim_timesteps 와 같은 시각)
 *   "logsnr" — λ 에서 고르게: λ 표를 뒤집어 선형 보간으로 시각을 찾고 반올림한다
 *   "karras" — σ_t/α_t = e^{−λ_t} 의 1/ρ 제곱을 고르게 나누고, 그 λ 로 같은 보간을 한다
 * 반올림으로 겹친 시각은 하나만 남긴다.
 */
export function dpmSolverTimesteps(sched, steps, spacing = "logsnr") {
  const T = sched.T;
  if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new Error(`샘플링 스텝 수는 1 에서 ${T} 사이의 정수여야 한다`);
  if (steps === 1) return [T - 1];
  let ts;
  if (spacing === "time") {
    ts = linspace(T - 1, 0, steps).map(roundHalfEven);
  } else if (spacing === "logsnr" || spacing === "karras") {
    const lam = Array.from({ length: T }, (_, t) => alphaSigmaLambda(sched, t).lambda);
    const xp = lam.slice().reverse(); // λ 가 커지는 순서 (t = T−1 … 0)
    const fp = Array.from({ length: T }, (_, i) => T - 1 - i);
    let targets;
    if (spacing === "logsnr") {
      targets = linspace(lam[T - 1], lam[0], steps);
    } else {
      const lo = Math.exp(-lam[T - 1]) ** (1 / KARRAS_RHO); // σ_max^{1/ρ}
      const hi = Math.exp(-lam[0]) ** (1 / KARRAS_RHO); // σ_min^{1/ρ}
      targets = linspace(0, 1, steps).map((r) => -Math.log((lo + r * (hi - lo)) ** KARRAS_RHO));
    }
    ts = targets.map((v) => roundHalfEven(interp(v, xp, fp)));
  } else {
    throw new Error(`알 수 없는 시각 간격: ${spacing}`);
  }
  const out = [];
  for (const t of ts) if (!out.length || t < out[out.length - 1]) out.push(t);
  return out;
}

/**
 * DPM-Solver++(2M) 의 한 단계: 시각 t 에서 tPrev (< t, −1 이면 끝) 로.
 * history 는 바로 앞 단계의 { t, x0 } (첫 단계는 null → 1차). 돌려주는 것: { xNext, x0 }.
 * x̂_0 은 DDIM 과 같이 [−1, 1] 로 자른다 (데이터 예측 형태라서 자른 x̂_0 이 곧 갱신에 들어간다).
 * noise (x_t 와 같은 길이의 N(0, I) 표본) 를 주면 SDE 판으로 간다. 마지막 단계에는 쓰지 않는다.
 */
export function dpmSolverStep(sched, xt, epsModel, t, tPrev, history = null, clip = true, noise = null) {
  const { x0 } = predictX0(sched, xt, epsModel, t, clip);
  if (tPrev < 0) return { xNext: x0, x0 };
  const cur = alphaSigmaLambda(sched, t);
  const next = alphaSigmaLambda(sched, tPrev);
  const h = next.lambda - cur.lambda;
  let d = x0;
  if (history) {
    const r = (cur.lambda - alphaSigmaLambda(sched, history.t).lambda) / h;
    d = new Float32Array(x0.length);
    for (let i = 0; i < x0.length; i++) d[i] = (1 + 1 / (2 * r)) * x0[i] - (1 / (2 * r)) * history.x0[i];
  }
  const xNext = new Float32Array(xt.length);
  if (noise) {
    // SDE 판: 앞 x 의 몫이 e^{−h} 만큼 더 줄고, 그만큼을 새 노이즈가 채운다
    const keep = -Math.expm1(-2 * h); // 1 − e^{−2h}
    const a = (next.sigma / cur.sigma) * Math.exp(-h);
    const b = next.alpha * keep;
    const c = next.sigma * Math.sqrt(keep);
    for (let i = 0; i < xt.length; i++) xNext[i] = a * xt[i] + b * d[i] + c * noise[i];
    return { xNext, x0 };
  }
  const a = next.sigma / cur.sigma;
  const b = next.alpha * Math.expm1(-h);
  for (let i = 0; i < xt.length; i++) xNext[i] = a * xt[i] - b * d[i];
  return { xNext, x0 };
}
