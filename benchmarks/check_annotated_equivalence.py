"""``UnetConfig.annotated()`` 가 Annotated Diffusion 노트북의 신경망과 같은 함수인지 확인한다 (벤치마크가 아니라 점검).

그 노트북의 ``Unet`` 은 denoising-diffusion-pytorch 0.11.2 의 ``Unet(use_convnext=True)`` 를 옮기면서 채널 방향
LayerNorm 을 ``GroupNorm(1, C)`` 로 바꾼 것이다. 이 스크립트는

1. 0.11.2 의 코드를 손대지 않고 불러 ``Unet(dim=28, channels=1, dim_mults=(1, 2, 4), use_convnext=True)`` 를 만들고,
2. 그 LayerNorm 의 계산만 노트북처럼 ``GroupNorm(1, C)`` 로 바꾼 뒤,
3. 그 가중치를 이름을 옮겨 ``Unet(UnetConfig.annotated())`` 에 그대로 넣고,
4. 같은 입력 (x_t, t) 에 대한 두 출력이 float64 에서 같은지 본다.

매개변수 수와 텐서 모양이 모두 같고 출력이 같으면, 단계 배치·스킵 연결·어텐션·시간 주입까지 같은 신경망이다.

    make bench-peers                                              # 한 번: benchmarks/.peers 에 원래 코드(0.11.2)를 설치
    .venv/bin/python benchmarks/check_annotated_equivalence.py   # --external DIR 로 다른 설치 디렉터리
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import PEERS, import_lucidrains


def rename(key: str) -> str:
    """0.11.2 의 매개변수 이름 → ddpm_ko 의 이름."""
    if key.startswith("final_conv.0."):
        key = "final_block." + key[len("final_conv.0.") :]
    elif key.startswith("final_conv.1."):
        key = "final_conv." + key[len("final_conv.1.") :]
    key = key.replace(".mlp.", ".time_mlp.")
    if key.endswith(".g"):
        key = key[:-2] + ".weight"
    elif key.endswith(".b"):
        key = key[:-2] + ".bias"
    return key


def main() -> None:
    import torch
    import torch.nn.functional as F

    from ddpm_ko.embeddings import sinusoidal_embedding
    from ddpm_ko.unet import Unet, UnetConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--external", default=str(PEERS), help="ddp-0.11.2/ 가 있는 디렉터리 (기본 benchmarks/.peers: make bench-peers)"
    )
    a = p.parse_args()
    mod = import_lucidrains(Path(a.external) / "ddp-0.11.2")

    def group_norm_1(self, x):  # 노트북이 쓴 GroupNorm(1, C) 와 같은 계산
        return F.group_norm(x, 1, self.g.reshape(-1), self.b.reshape(-1), self.eps)

    mod.LayerNorm.forward = group_norm_1
    # 사인파 시간 임베딩: 두 식은 같지만 float32 의 계산 순서가 달라 1e-7 쯤 다르다. 그 차이는 따로 재고,
    # 신경망의 나머지를 정확히 비교하려고 원래 코드도 ddpm_ko 의 임베딩 값을 받게 한다
    t_all = torch.arange(1000)
    emb_diff = (mod.SinusoidalPosEmb(28)(t_all.float()) - sinusoidal_embedding(t_all, 28)).abs().max().item()
    print(f"사인파 임베딩의 최대 차이 (float32, t = 0..999): {emb_diff:.2e}")
    mod.SinusoidalPosEmb.forward = lambda self, t: sinusoidal_embedding(t, self.dim).double()

    torch.manual_seed(0)
    original = mod.Unet(dim=28, channels=1, dim_mults=(1, 2, 4), use_convnext=True, convnext_mult=2).double().eval()
    ours = Unet(UnetConfig.annotated()).double().eval()
    n_orig = sum(p.numel() for p in original.parameters())
    print(f"매개변수: 원래 {n_orig:,}, ddpm_ko {ours.num_parameters():,}")

    target = ours.state_dict()
    moved = {}
    for k, v in original.state_dict().items():
        name = rename(k)
        if name not in target:
            raise SystemExit(f"ddpm_ko 에 대응하는 매개변수가 없다 / no counterpart for {k} -> {name}")
        moved[name] = v.reshape(target[name].shape)
    missing = sorted(set(target) - set(moved))
    if missing:
        raise SystemExit(f"원래 코드에 없는 매개변수 / parameters only in ddpm_ko: {missing}")
    ours.load_state_dict(moved)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        y_orig, y_ours = original(x, t), ours(x, t)
    diff = (y_orig - y_ours).abs().max().item()
    print(f"출력의 최대 차이 (float64): {diff:.3e}, 출력의 크기 {y_orig.abs().max().item():.3f}")
    if n_orig != ours.num_parameters() or diff > 1e-10 or emb_diff > 1e-4:
        raise SystemExit("다르다 / NOT the same network")
    print("같은 신경망이다 / same network")


if __name__ == "__main__":
    main()
