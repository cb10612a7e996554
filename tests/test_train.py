"""Mixed precision: the setting, what stays in float32, and that a bf16 step trains like an fp32 one."""

from __future__ import annotations

import pytest
import torch

from exifkit.model.covariance import covariance_pool
from exifkit.model.extractor import Extractor, ExtractorConfig
from exifkit.train import autocast, bf16_supported, resolve_precision

SMALL = ExtractorConfig(patch_size=32, width=16, convs_per_stage=(2, 1, 1, 1))


def test_precision_setting_is_validated_and_auto_follows_the_hardware(monkeypatch, caplog):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)
    monkeypatch.setattr("exifkit.train.bf16_supported", lambda device: (False, "no native bf16 here"))
    with caplog.at_level("WARNING", logger="exifkit.train"):
        assert resolve_precision("auto", cpu) == "fp32"
    assert "training in fp32: no native bf16 here" in caplog.text
    monkeypatch.setattr("exifkit.train.bf16_supported", lambda device: (True, ""))
    assert resolve_precision("auto", cpu) == "bf16"


def test_bf16_support_reads_the_cpu_flags():
    ok, why = bf16_supported(torch.device("cpu"))
    flags = open("/proc/cpuinfo").read()
    assert ok == (" avx512_bf16" in flags or " amx_bf16" in flags)
    assert ok or "no native bf16" in why


def test_covariance_pool_runs_in_float32_under_autocast():
    x = torch.randn(3, 8, 6, 6)
    with autocast(torch.device("cpu"), "bf16"):
        pooled = covariance_pool(x.bfloat16())
    assert pooled.dtype == torch.float32
    exact = covariance_pool(x.bfloat16().float())
    torch.testing.assert_close(pooled, exact)


def test_bf16_forward_keeps_float32_outputs_where_they_matter_and_agrees_with_fp32():
    torch.manual_seed(0)
    ext = Extractor(SMALL).train()
    x = torch.randn(2, 4, 3, 32, 32)
    ref = ext(x)
    with autocast(torch.device("cpu"), "bf16"):
        out = ext(x)
    assert out.patch_vectors.dtype == torch.float32  # the covariance square root
    assert out.stages[0].dtype == torch.bfloat16  # the convolutions
    rel = (out.feature.float() - ref.feature).norm() / ref.feature.norm()
    assert rel < 0.05, f"bf16 feature differs from fp32 by {rel:.3f} (relative)"


def test_bf16_pretext_step_lowers_the_loss_like_fp32():
    from exifkit.model.heads import AUTHORS_HEAD_SIZES
    from exifkit.pretext import PretextConfig, PretextModel, pretext_step

    def run(precision):
        torch.manual_seed(0)
        model = PretextModel(SMALL, AUTHORS_HEAD_SIZES)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        batch = {"x1": torch.randn(4, 4, 3, 32, 32, generator=g), "x2": torch.randn(4, 4, 3, 32, 32, generator=g),
                 "cat1": torch.tensor([[0, 1, 0, 1, 0, 1, 0], [1, 0, 1, 0, 1, 0, 1]] * 2),
                 "rank1": torch.rand(4, 7, generator=g), "rank2": torch.rand(4, 7, generator=g)}
        losses = [pretext_step(model, opt, batch, PretextConfig(extractor=SMALL), precision)[0].item()
                  for _ in range(8)]
        return losses

    fp32, bf16 = run("fp32"), run("bf16")
    assert bf16[-1] < bf16[0] * 0.8 and fp32[-1] < fp32[0] * 0.8
    assert abs(bf16[0] - fp32[0]) < 0.05 * fp32[0]  # the same starting point, to bf16 rounding


def test_a_checkpoint_written_before_a_setting_existed_resumes_at_its_default(tmp_path):
    from exifkit.train import ResumeMismatchError, check_resumable

    state = {"step": 3, "config": {"lr": 1e-4, "steps": 6}}  # written before "workers" was a setting
    check_resumable(tmp_path, state, {"lr": 1e-4, "steps": 6, "workers": 0}, defaults={"workers": 0})
    with pytest.raises(ResumeMismatchError, match="workers: 0 in the checkpoint, 2 now"):
        check_resumable(tmp_path, state, {"lr": 1e-4, "steps": 6, "workers": 2}, defaults={"workers": 0})
