// "브라우저에서 샘플링" 쪽의 화면: 단추를 누르면 책의 U-Net 을 onnxruntime-web(WASM)으로 돌려 샘플링한다.
// 샘플러의 산수는 ddim.js (DDIM) 와 dpm_solver.js (DPM-Solver++(2M) 과 그 SDE 판), 난수는 prng.js 에 있다.
// 클래스를 골랐을 때의 분류기 없는 가이던스는 guidance.js 에 있다. 이 파일은 불러오기, 입력 읽기, 그리기만 한다.
//
// 클래스를 고르지 않으면 조건 없는 모델(unet.onnx)을 쓴다. 클래스를 처음 고르면 그때 조건부 모델(unet_cond.onnx,
// 입력 labels 가 하나 더 있다)을 받아 온다.
//
// 검사(tests_site/test_live_sampling.py)는 window.ddpmLive 를 통해 결과를 읽는다:
//   ddpmLive.ready      — 모델을 다 불러오면 풀리는 Promise (실패하면 오류 메시지로 거절된다)
//   ddpmLive.lastResult — 마지막 샘플링의 입력(클래스, w 포함), x_T, 최종 이미지, 스텝별 U-Net 시간(ms)
//   ddpmLive.loadConditional() — 조건부 모델을 불러오는 Promise (클래스를 고르면 쪽이 스스로 부른다)

import { clampImage, ddimStep, ddimTimesteps, makeSchedule, toByte } from "./ddim.js";
import { dpmSolverStep, dpmSolverTimesteps } from "./dpm_solver.js";
import { cfgCombine, guidedBatch } from "./guidance.js";
import { NormalStream } from "./prng.js";

const $ = (id) => document.getElementById(id);
const ui = {
  cls: $("live-class"),
  guidance: $("live-guidance"),
  guidanceValue: $("live-guidance-value"),
  sampler: $("live-sampler"),
  run: $("live-run"),
  stop: $("live-stop"),
  steps: $("live-steps"),
  eta: $("live-eta"),
  seed: $("live-seed"),
  num: $("live-num"),
  status: $("live-status"),
  stats: $("live-stats"),
  runtime: $("live-runtime"),
  xt: $("live-xt"),
  x0: $("live-x0"),
  xtLabel: $("live-xt-label"),
  x0Label: $("live-x0-label"),
};

const here = (name) => new URL(name, import.meta.url).href;
const state = {
  ort: null, session: null, info: null, schedule: null, running: false, stopRequested: false,
  cond: null, // 조건부 모델 { session, info } (클래스를 처음 고를 때 불러온다)
  condLoading: null, // 그 불러오기의 Promise (한 번만 받는다)
};
const live = { ready: null, lastResult: null, state, loadConditional };
window.ddpmLive = live;

function setStatus(text, kind = "info") {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

// 교차 출처 격리(COOP/COEP 헤더)가 켜진 쪽에서만 SharedArrayBuffer 가 있어 WASM 스레드를 쓸 수 있다.
function wasmThreads() {
  if (!globalThis.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
}

async function load() {
  if (location.protocol === "file:") {
    throw new Error(
      "이 쪽을 파일(file://)로 열었다. 브라우저는 파일로 연 쪽에서 WASM 실행기와 모델을 읽지 못하게 막는다. " +
        "사이트 폴더에서 `python -m http.server` 를 띄운 뒤 http://localhost:8000/ 으로 열어라.",
    );
  }
  let ort;
  try {
    ort = await import("./ort/ort.wasm.min.mjs");
  } catch (e) {
    throw new Error(`onnxruntime-web 을 불러오지 못했다 (${e.message}). 책을 빌드할 때 npm ci --prefix web 을 했는지 확인하라.`);
  }
  ort.env.wasm.wasmPaths = here("./ort/");
  ort.env.wasm.numThreads = wasmThreads();
  // 계산은 onnxruntime 이 띄우는 웹 워커에서 한다: U-Net 이 도는 동안에도 쪽이 멈추지 않고 '멈춤' 단추가 눌린다
  ort.env.wasm.proxy = true;
  ort.env.logLevel = "error";
  const response = await fetch(here("./unet.json"));
  if (!response.ok) throw new Error(`unet.json 을 읽지 못했다 (HTTP ${response.status})`);
  const info = await response.json();
  if (info.diffusion.prediction_type !== "eps") {
    throw new Error(`이 쪽의 샘플러는 ε-예측 모델만 돌린다 (받은 모델: ${info.diffusion.prediction_type})`);
  }
  state.schedule = makeSchedule(info.diffusion.timesteps, info.diffusion.schedule);
  state.session = await ort.InferenceSession.create(here("./unet.onnx"), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  state.ort = ort;
  state.info = info;
  const threads = ort.env.wasm.numThreads;
  ui.runtime.textContent =
    `onnxruntime-web ${ort.env.versions?.web ?? ""} · WASM · 스레드 ${threads}개` +
    (globalThis.crossOriginIsolated ? " (교차 출처 격리 켜짐)" : " (교차 출처 격리 꺼짐: 한 스레드)") +
    ` · 모델 ${(info.bytes / 1e6).toFixed(1)} MB (${info.source.checkpoint}, ${info.source.step} 학습 스텝)`;
}

// 조건부 모델(unet_cond.onnx)을 한 번만 불러온다. 조건 없는 모델을 다 불러온 뒤에 부른다(실행기를 함께 쓴다).
function loadConditional() {
  if (!state.condLoading) {
    state.condLoading = (async () => {
      await live.ready;
      const response = await fetch(here("./unet_cond.json"));
      if (!response.ok) {
        throw new Error(
          `조건부 모델 unet_cond.json 을 읽지 못했다 (HTTP ${response.status}). 책을 빌드할 때 패키지에 조건부 모델 ` +
            "(pretrained-conditional)이 있어야 이 파일이 생긴다.",
        );
      }
      const info = await response.json();
      const d = info.diffusion;
      const base = state.info.diffusion;
      if (!info.num_classes || d.prediction_type !== "eps" || d.timesteps !== base.timesteps || d.schedule !== base.schedule) {
        throw new Error("조건부 모델의 설정(레이블 입력, ε-예측, 스케줄)이 이 쪽의 샘플러와 맞지 않는다");
      }
      const session = await state.ort.InferenceSession.create(here("./unet_cond.onnx"), {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      state.cond = { session, info };
      ui.runtime.textContent +=
        ` · 조건부 모델 ${(info.bytes / 1e6).toFixed(1)} MB (${info.source.checkpoint}, ${info.source.step} 학습 스텝)`;
      return state.cond;
    })();
    state.condLoading.catch(() => {
      state.condLoading = null; // 실패하면 다음에 클래스를 고를 때 다시 해 본다
    });
  }
  return state.condLoading;
}

// 샘플러 선택지: DDIM, 또는 SDE-DPM-Solver++(2M)·DPM-Solver++(2M) 과 그 시각 간격
const SAMPLERS = {
  ddim: { kind: "ddim" },
  "sde-dpm-karras": { kind: "sde-dpm-solver++", spacing: "karras" },
  "sde-dpm-logsnr": { kind: "sde-dpm-solver++", spacing: "logsnr" },
  "dpm-karras": { kind: "dpm-solver++", spacing: "karras" },
  "dpm-logsnr": { kind: "dpm-solver++", spacing: "logsnr" },
  "dpm-time": { kind: "dpm-solver++", spacing: "time" },
};

function readInputs() {
  const label = ui.cls.value === "" ? null : Number(ui.cls.value);
  const guidance = Number(ui.guidance.value);
  if (label !== null && !(Number.isInteger(label) && label >= 0)) throw new Error(`알 수 없는 클래스: ${ui.cls.value}`);
  if (!(guidance >= 0 && Number.isFinite(guidance))) throw new Error("가이던스 w 는 0 이상이어야 한다");
  const sampler = SAMPLERS[ui.sampler.value];
  if (!sampler) throw new Error(`알 수 없는 샘플러: ${ui.sampler.value}`);
  const steps = Number(ui.steps.value);
  const eta = Number(ui.eta.value);
  const seed = Number(ui.seed.value);
  const num = Number(ui.num.value);
  const T = state.info.diffusion.timesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new Error(`샘플링 스텝 수는 1 에서 ${T} 사이의 정수여야 한다`);
  if (!(eta >= 0 && eta <= 1)) throw new Error("η 는 0 에서 1 사이여야 한다");
  if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) throw new Error("시드는 0 에서 4294967295 사이의 정수여야 한다");
  if (!Number.isInteger(num) || num < 1 || num > 64) throw new Error("이미지 수는 1 에서 64 사이여야 한다");
  if (sampler.kind !== "ddim" && eta !== 0) throw new Error("η 는 DDIM 에만 쓴다: DPM-Solver++ 를 고르면 0 이어야 한다");
  return { sampler, steps, eta, seed, num, label, guidance };
}

/**
 * 신경망 출력 ε 한 번. label 이 null 이면 조건 없는 모델, 아니면 조건부 모델에 분류기 없는 가이던스를 한다
 * (guidance.js: w > 0 이면 이미지 2·num 장을 한 번에). 돌려주는 것: { eps, batch } (batch 는 신경망에 넣은 이미지 수).
 */
async function predictEps(x, t, num, label, w) {
  const { ort, session, info } = state;
  const shape = [num, info.channels, info.image_size, info.image_size];
  if (label === null) {
    const feeds = {
      // 워커로 보내는 배열은 넘겨주고 나면 비므로(transfer) 사본을 보낸다
      x_t: new ort.Tensor("float32", x.slice(), shape),
      t: new ort.Tensor("int64", new BigInt64Array(num).fill(BigInt(t)), [num]),
    };
    return { eps: (await session.run(feeds))[info.output].data, batch: num };
  }
  const cond = state.cond;
  const g = guidedBatch(x, num, label, cond.info.null_label, w);
  const feeds = {
    x_t: new ort.Tensor("float32", g.x, [g.batch, ...shape.slice(1)]),
    t: new ort.Tensor("int64", new BigInt64Array(g.batch).fill(BigInt(t)), [g.batch]),
    labels: new ort.Tensor("int64", g.labels, [g.batch]),
  };
  const out = (await cond.session.run(feeds))[cond.info.output].data;
  return { eps: cfgCombine(out, x.length, w), batch: g.batch };
}

// (N, 1, S, S) 이미지를 격자로 캔버스 하나에 그린다. 캔버스의 한 픽셀이 이미지의 한 픽셀이고, CSS 가 키운다.
function drawGrid(canvas, x, num) {
  const size = state.info.image_size;
  const cols = Math.ceil(Math.sqrt(num));
  const rows = Math.ceil(num / cols);
  const gap = 2;
  const width = cols * size + (cols - 1) * gap;
  const height = rows * size + (rows - 1) * gap;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, height);
  img.data.fill(255); // 칸 사이는 흰색
  for (let k = 0; k < num; k++) {
    const ox = (k % cols) * (size + gap);
    const oy = Math.floor(k / cols) * (size + gap);
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) {
        const v = toByte(x[k * size * size + r * size + c]);
        const p = 4 * ((oy + r) * width + (ox + c));
        img.data[p] = img.data[p + 1] = img.data[p + 2] = v;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
}

async function sample() {
  const { sampler, steps, eta, seed, num, label, guidance } = readInputs();
  if (label !== null) {
    setStatus("조건부 모델을 불러오는 중이다…", "running");
    await loadConditional();
  }
  const { ort, info, schedule } = state;
  const size = info.image_size;
  const ts = sampler.kind === "ddim" ? ddimTimesteps(schedule.T, steps) : dpmSolverTimesteps(schedule, steps, sampler.spacing);
  const rng = new NormalStream(seed);
  const xT = rng.take(num * info.channels * size * size); // x_T ~ N(0, I): 먼저 뽑고, 그다음 스텝마다 z 를 뽑는다
  let x = xT;
  let x0 = null;
  let history = null; // DPM-Solver++(2M) 가 기억하는 바로 앞 스텝의 { t, x0 }
  const msPerEval = [];
  let batchPerEval = num;
  const started = performance.now();
  drawGrid(ui.xt, x, num);
  drawGrid(ui.x0, new Float32Array(x.length).fill(-1), num);
  for (let i = 0; i < ts.length; i++) {
    if (state.stopRequested) break;
    const t = ts[i];
    const tPrev = i + 1 < ts.length ? ts[i + 1] : -1;
    const t0 = performance.now();
    const { eps, batch } = await predictEps(x, t, num, label, guidance);
    msPerEval.push(performance.now() - t0);
    batchPerEval = batch;
    let step;
    if (sampler.kind === "ddim") {
      const z = eta > 0 && tPrev >= 0 ? rng.take(x.length) : null;
      const s = ddimStep(schedule, x, eps, t, tPrev, eta, z);
      step = { xNext: s.xPrev, x0: s.x0 };
    } else {
      // SDE 판은 마지막 단계(σ = 0 으로 가는)를 빼고 스텝마다 z 를 뽑는다 (패키지와 같은 순서)
      const z = sampler.kind === "sde-dpm-solver++" && tPrev >= 0 ? rng.take(x.length) : null;
      step = dpmSolverStep(schedule, x, eps, t, tPrev, history, true, z);
      history = { t, x0: step.x0 };
    }
    ui.xtLabel.textContent = `현재 xₜ (t = ${t + 1})`;
    ui.x0Label.textContent = `짐작한 x̂₀ (t = ${t + 1} 에서)`;
    drawGrid(ui.xt, x, num);
    drawGrid(ui.x0, step.x0, num);
    x = step.xNext;
    x0 = step.x0;
    setStatus(`${i + 1} / ${ts.length} 스텝 (t = ${t + 1} → ${tPrev + 1})`);
    // 따로 쉬어 갈 필요가 없다: 다음 U-Net 을 워커가 계산하는 동안 브라우저가 이 그림을 화면에 그린다
  }
  const stopped = state.stopRequested;
  const final = clampImage(x);
  const wallMs = performance.now() - started;
  if (!stopped) {
    ui.xtLabel.textContent = "완성된 x₀";
    drawGrid(ui.xt, final, num);
  }
  const mean = msPerEval.reduce((a, b) => a + b, 0) / Math.max(1, msPerEval.length);
  ui.stats.textContent =
    `U-Net 평가 ${msPerEval.length}번, 한 번에 평균 ${mean.toFixed(0)} ms (이미지 ${batchPerEval}장 묶음), ` +
    `전체 ${(wallMs / 1000).toFixed(1)} 초`;
  live.lastResult = {
    sampler: ui.sampler.value, steps, eta, seed, num, label, guidance: label === null ? null : guidance, batchPerEval,
    stopped, timesteps: ts,
    threads: ort.env.wasm.numThreads, crossOriginIsolated: !!globalThis.crossOriginIsolated,
    xT: Array.from(xT), final: Array.from(final), lastX0: x0 ? Array.from(x0) : null,
    msPerEval, wallMs,
  };
  return stopped;
}

async function onRun() {
  if (state.running) return;
  state.running = true;
  state.stopRequested = false;
  setStatus("샘플링을 시작한다…", "running");
  ui.run.disabled = true;
  ui.stop.disabled = false;
  try {
    const stopped = await sample();
    setStatus(stopped ? "멈췄다." : "끝났다. 시드나 η를 바꿔 다시 해 보자.", "done");
  } catch (e) {
    setStatus(`샘플링하지 못했다: ${e.message}`, "error");
  } finally {
    state.running = false;
    ui.run.disabled = false;
    ui.stop.disabled = true;
  }
}

ui.run.addEventListener("click", onRun);
// η 는 DDIM 에만 있으므로 DPM-Solver++ 두 판에서는 η 칸을 잠근다 (처음 고른 샘플러에도 바로 적용한다)
function syncEta() {
  const noEta = SAMPLERS[ui.sampler.value]?.kind !== "ddim";
  if (noEta) ui.eta.value = "0";
  ui.eta.disabled = noEta;
}
ui.sampler.addEventListener("change", syncEta);
syncEta();
ui.stop.addEventListener("click", () => {
  state.stopRequested = true;
});
// 가이던스 w 는 클래스를 골랐을 때만 뜻이 있다. 클래스를 고르면 조건부 모델을 그때 받아 온다.
function syncGuidance() {
  ui.guidance.disabled = ui.cls.value === "";
  ui.guidanceValue.textContent = Number(ui.guidance.value).toFixed(1);
}
ui.guidance.addEventListener("input", syncGuidance);
ui.cls.addEventListener("change", async () => {
  syncGuidance();
  if (ui.cls.value === "" || state.cond || state.running) return;
  try {
    await live.ready;
    setStatus("조건부 모델을 불러오는 중이다…");
    await loadConditional();
    if (!state.running) setStatus("준비되었다. ‘샘플링 시작’을 누르자.", "ready");
  } catch (e) {
    if (!state.running) setStatus(e.message, "error");
  }
});
syncGuidance();

live.ready = (async () => {
  setStatus("모델과 WASM 실행기를 불러오는 중이다…");
  try {
    await load();
  } catch (e) {
    setStatus(e.message, "error");
    throw e;
  }
  ui.run.disabled = false;
  setStatus("준비되었다. ‘샘플링 시작’을 누르자.", "ready");
})();
live.ready.catch(() => {}); // 실패는 화면에 적었다: 처리되지 않은 거절로 콘솔을 어지럽히지 않는다
