"""여러 프로세스 학습(``torchrun --nproc_per_node N``)의 도구: 프로세스 정보, 시작과 끝, 배치 나누기, 평균 내기.

모든 프로세스가 같은 전역 배치와 같은 노이즈를 만들고 자기 몫(``shard``)만 학습한다. 그래디언트는
DistributedDataParallel 이 평균하고, 손실과 발산 표시는 여기의 all-reduce 도우미로 모든 프로세스가 같은 값을 본다.
프로세스가 하나면 (``world == 1``) 모든 함수가 통신 없이 그대로 돌려준다.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "dist_info",
    "init_process_group",
    "wrap_model",
    "shard",
    "mean_over_ranks",
    "any_rank",
    "weights_fingerprint",
    "rank_fingerprints",
    "finish",
]


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank). torchrun 이 정한 환경 변수를 읽는다."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def init_process_group(world: int, local_rank: int, batch_size: int, device: str | None) -> tuple[bool, str | None]:
    """프로세스 그룹을 (아직 없으면) 만들고 ``(이 함수가 만들었는가, 쓸 장치)`` 를 돌려준다.

    ``--device cpu`` 면 GPU 가 있어도 gloo 로 CPU 프로세스끼리 그래디언트를 평균한다. GPU 면 프로세스마다
    ``cuda:local_rank`` 를 쓴다. 전역 배치가 프로세스 수로 나누어지지 않으면 ``ValueError``.
    """
    if world <= 1:
        return False, device
    if batch_size % world:
        raise ValueError(
            f"전역 batch_size {batch_size} 가 프로세스 수 {world} 로 나누어지지 않는다 / "
            "global batch size must be divisible by the number of processes"
        )
    use_cuda = torch.cuda.is_available() and device != "cpu"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    return owns, device


def wrap_model(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """여러 프로세스면 DistributedDataParallel 로 감싼다 (역전파 때 그래디언트를 평균한다). 하나면 그대로."""
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(rank: int, world: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """전역 배치의 텐서들에서 이 프로세스의 몫(같은 크기의 연속 조각)만 잘라 낸다."""
    if world <= 1:
        return tensors
    per = tensors[0].shape[0] // world
    sl = slice(rank * per, (rank + 1) * per)
    return tuple(t[sl] for t in tensors)


def mean_over_ranks(value: torch.Tensor, world: int) -> torch.Tensor:
    """모든 프로세스의 ``value`` 평균 (모든 프로세스가 함께 부른다). 원래 텐서는 바꾸지 않는다."""
    if world <= 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """어느 한 프로세스라도 ``flag`` 가 참이면 모든 프로세스에서 참 (모든 프로세스가 함께 부른다)."""
    if world <= 1:
        return flag
    t = torch.tensor(float(flag), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) > 0


def weights_fingerprint(model: nn.Module) -> str:
    """모델 가중치와 버퍼 바이트의 SHA-256. 분산 학습에서 모든 프로세스의 값이 같아야 한다."""
    h = hashlib.sha256()
    for name, v in sorted(model.state_dict().items()):
        h.update(name.encode("utf-8"))
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rank_fingerprints(model: nn.Module, world: int) -> dict[str, Any]:
    """체크포인트에 적을 분산 정보: 프로세스 수, 그리고 여러 프로세스면 프로세스마다의 가중치 지문과 일치 여부."""
    info: dict[str, Any] = {"world_size": world}
    if world > 1:
        prints: list[Any] = [None] * world
        dist.all_gather_object(prints, weights_fingerprint(model))
        info.update(backend=str(dist.get_backend()), rank_weight_sha256=prints, ranks_in_sync=len(set(prints)) == 1)
    return info


def finish(world: int, owns_process_group: bool) -> None:
    """모든 프로세스가 여기까지 오기를 기다리고, 이 학습이 만든 프로세스 그룹이면 닫는다."""
    if world > 1:
        dist.barrier()
        if owns_process_group:
            dist.destroy_process_group()
