// 분류기 없는 가이던스(classifier-free guidance, Ho & Salimans 2022): 클래스를 고른 샘플링의 신경망 출력 섞기.
//
// 패키지의 src/ddpm_ko/guidance.py 를 옮긴 것이다. 신경망은 여기 없다: app.js 가 이 함수들로 입력을 만들고
// onnxruntime-web 으로 조건부 U-Net(unet_cond.onnx)을 한 번 부른 뒤, 그 출력을 여기서 섞는다.
//
//   guidedBatch  guided_model: w > 0 이면 x = [x, x], t = [t, t], labels = [y…, ∅…] 인 한 번의 호출(2B 장),
//                w = 0 이면 조건 없는 쪽을 계산하지 않는다 (B 장, 레이블 y)
//   cfgCombine   cfg_combine: ε̃ = (1 + w)·ε(x, t, y) − w·ε(x, t, ∅) 를 ε_y + w·(ε_y − ε_∅) 로
//
// diffusers 의 guidance_scale s 는 ε_∅ + s·(ε_y − ε_∅) 로 쓰므로 s = 1 + w 다.
// tests_site/test_live_sampling.py 가 cfgCombine 을 패키지의 cfg_combine 과 비트까지 맞춰 본다.

/**
 * 신경망에 넣을 배치. x 는 이미지 num 장(Float32Array), label 은 고른 클래스, nullLabel 은 '레이블 없음'(∅)의 번호.
 * 돌려주는 것: { x, labels, batch } (batch = w > 0 이면 2·num, 아니면 num).
 */
export function guidedBatch(x, num, label, nullLabel, w) {
  const guided = w !== 0;
  const batch = guided ? 2 * num : num;
  const xs = new Float32Array(guided ? 2 * x.length : x.length);
  xs.set(x);
  const labels = new BigInt64Array(batch).fill(BigInt(label));
  if (guided) {
    xs.set(x, x.length);
    labels.fill(BigInt(nullLabel), num);
  }
  return { x: xs, labels, batch };
}

/**
 * guidedBatch 로 부른 신경망 출력 out 을 섞어 이미지 num 장의 ε̃ 을 돌려준다 (size = 이미지 num 장의 값 수).
 * w = 0 이면 out 이 곧 ε(x, t, y) 다. PyTorch 의 float32 연산처럼 뺄셈·곱셈·덧셈마다 float32 로 반올림한다.
 */
export function cfgCombine(out, size, w) {
  if (w === 0) return out;
  if (out.length !== 2 * size) throw new Error(`가이던스 출력의 크기가 ${2 * size} 가 아니다: ${out.length}`);
  const f = Math.fround;
  const eps = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const c = out[i];
    eps[i] = f(c + f(w * f(c - out[size + i])));
  }
  return eps;
}
