"""The CUDA paths: training on a GPU with fp16 (autocast and a grad scaler) and bf16, GPU memory
monitoring, a GPU checkpoint read back on the CPU, the PPO update on the GPU against the CPU,
and DDP over NCCL. Skipped without a CUDA GPU (CI has none); run on a GPU machine with
``pytest -m cuda``."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clstm_ppo.agent.network import RecurrentState
from clstm_ppo.agent.ppo import Rollout, ppo_update
from clstm_ppo.config import build_config
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.trainer import Trainer
from test_ddp import PPO, _model, _rollout
from tiny import tiny_flags, tiny_overrides

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none found)"),
]
GPU = torch.device("cuda:0")
ROOT = Path(__file__).resolve().parents[1]


def _to(rollout: Rollout, device: torch.device | str) -> Rollout:
    moved = {
        field.name: getattr(rollout, field.name).to(device)
        for field in dataclasses.fields(rollout)
        if isinstance(getattr(rollout, field.name), torch.Tensor)
    }
    state = RecurrentState(*(t.to(device) for t in rollout.initial_state))
    return dataclasses.replace(rollout, **moved, initial_state=state)


def _trainer(folder: Path, amp: str) -> Trainer:
    config = build_config(overrides=tiny_overrides(folder, train__amp=amp, train__stats_every=4))
    return Trainer(config, folder / "run", GPU)


def _gpu_lines(folder: Path) -> list[str]:
    log = next((folder / "run" / "logs").glob("*.log")).read_text()
    return [line for line in log.splitlines() if "GPU memory:" in line]


def test_fp16_training_scales_gradients_checkpoints_and_resumes_on_the_gpu(tmp_path) -> None:
    trainer = _trainer(tmp_path, "fp16")
    assert trainer.scaler is not None and trainer.autocast_dtype == torch.float16
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(8)
    after = trainer.model.state_dict()
    assert all(v.device.type == "cuda" and v.dtype == torch.float32 for v in after.values())
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    scale = trainer.scaler.get_scale()
    assert math.isfinite(scale) and scale > 0
    # Memory monitoring: one line per progress report, with the card's real size.
    lines = _gpu_lines(tmp_path)
    total = torch.cuda.get_device_properties(GPU).total_memory / 2**30
    assert lines and all(f"of {total:.1f} GiB" in line for line in lines)
    trainer.reporter.close()

    # The checkpoint is plain tensors: it loads on the CPU with weights_only=True.
    latest = ckpt.resolve(tmp_path / "run" / "checkpoints", "latest")
    payload = ckpt.load(latest)
    assert payload["scaler"]["scale"] == pytest.approx(scale)
    assert all(v.device.type == "cpu" for v in payload["model"].values())
    resumed = _trainer(tmp_path, "fp16")
    resumed.load(latest)
    assert resumed.scaler.get_scale() == pytest.approx(scale)
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, after[name], rtol=0, atol=0)
    resumed.train(12)
    assert resumed.state.episodes >= 12
    resumed.reporter.close()


def test_bf16_training_runs_on_the_gpu_without_a_scaler(tmp_path) -> None:
    trainer = _trainer(tmp_path, "bf16")
    assert trainer.scaler is None and trainer.autocast_dtype == torch.bfloat16
    trainer.train(4)
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    trainer.reporter.close()


def test_the_ppo_update_on_the_gpu_matches_the_cpu(monkeypatch) -> None:
    # TF32 (on by default for cuDNN) would round the GPU's LSTM products to 10 mantissa bits.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu_model = _model()
    rollout, advantages, returns = _rollout(cpu_model, seed=0)
    gpu_model = _model().to(GPU)
    gpu_rollout = _to(rollout, GPU)
    for model, batch, adv, ret in (
        (cpu_model, rollout, advantages, returns),
        (gpu_model, gpu_rollout, advantages.to(GPU), returns.to(GPU)),
    ):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
        for _ in range(3):
            ppo_update(model, optimizer, batch, adv, ret, PPO, torch.Generator().manual_seed(7))
    for name, value in gpu_model.state_dict().items():
        # Each Adam step moves a weight by up to lr = 1e-3, so a wrong gradient shows at that
        # scale; CPU and GPU kernels differ by rounding, about 1e-5 here.
        torch.testing.assert_close(value.cpu(), cpu_model.state_dict()[name], rtol=1e-3, atol=1e-4)


def _nccl_worker(rank: int, world: int, folder: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    try:
        total = torch.full((3,), float(rank + 1), device=f"cuda:{rank}")
        dist.all_reduce(total)
        device = torch.device(f"cuda:{rank}")
        model = _model().to(device)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
        rollout, advantages, returns = _rollout(_model(), seed=0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
        for _ in range(3):
            ppo_update(ddp, optimizer, _to(rollout, device), advantages.to(device),
                       returns.to(device), PPO, torch.Generator().manual_seed(7))  # fmt: skip
        weights = {k: v.cpu() for k, v in model.state_dict().items()}
        torch.save({"total": total.cpu(), "model": weights}, Path(folder) / f"nccl{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_over_nccl_reduces_and_updates_like_one_gpu(tmp_path) -> None:
    world = torch.cuda.device_count()  # one process per GPU, as --num_gpus N launches
    mp.spawn(_nccl_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    result = torch.load(tmp_path / "nccl0.pt", weights_only=True)
    assert result["total"].tolist() == [world * (world + 1) / 2] * 3
    # Every rank fed the same rollout, so the averaged gradients equal one GPU's.
    single = _model().to(GPU)
    rollout, advantages, returns = _rollout(_model(), seed=0)
    optimizer = torch.optim.Adam(single.parameters(), lr=1e-3, eps=1e-5)
    for _ in range(3):
        ppo_update(single, optimizer, _to(rollout, GPU), advantages.to(GPU), returns.to(GPU), PPO,
                   torch.Generator().manual_seed(7))  # fmt: skip
    for name, value in single.state_dict().items():
        torch.testing.assert_close(result["model"][name], value.cpu(), rtol=1e-5, atol=1e-6)


def test_the_report_script_trains_on_the_gpu_with_num_gpus_1(tmp_path) -> None:
    """The original script's command, as written, picks the GPU and monitors its memory."""
    flags = tiny_flags(tmp_path, train__amp="fp16", train__stats_every=2)
    done = subprocess.run(
        [sys.executable, str(ROOT / "train_enhanced_clstm_ppo.py"), "--episodes", "4",
         "--num_gpus", "1", *flags],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    run = next(p for p in tmp_path.iterdir() if (p / "checkpoints").is_dir())
    log = next((run / "logs").glob("*.log")).read_text()
    assert "GPU memory:" in log and "not applicable" not in log
    payload = ckpt.load(ckpt.resolve(run / "checkpoints", "latest"))
    assert payload["scaler"] is not None  # fp16 on CUDA: the scaler was used and saved
