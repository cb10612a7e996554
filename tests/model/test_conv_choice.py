"""Which convolutions CPU inference uses: measured once per machine and precision, remembered,
overridable."""

import json

import pytest

from exifkit.model import conv_choice, winograd


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A cache of its own and no decision taken yet in this process."""
    monkeypatch.setenv("EXIFKIT_CACHE", str(tmp_path))
    monkeypatch.delenv(conv_choice.ENV, raising=False)
    monkeypatch.setattr(conv_choice, "_decided", {})
    return tmp_path


def test_the_environment_decides_without_measuring(fresh, monkeypatch):
    monkeypatch.setattr(conv_choice, "measure", lambda bf16: pytest.fail("measured although told"))
    for method in conv_choice.METHODS:
        monkeypatch.setenv(conv_choice.ENV, method)
        assert conv_choice.inference_convolutions(bf16=False) == method
    monkeypatch.setenv(conv_choice.ENV, "fft")
    with pytest.raises(ValueError, match="EXIFKIT_INFERENCE_CONV must be one of"):
        conv_choice.inference_convolutions(bf16=False)


def test_the_faster_method_is_chosen_once_per_precision_and_remembered_across_processes(fresh, monkeypatch):
    calls = []
    timings = {False: {"winograd": 18.5, "direct": 31.0}, True: {"winograd": 9.0, "direct": 6.5}}
    monkeypatch.setattr(conv_choice, "measure", lambda bf16: calls.append(bf16) or timings[bf16])
    assert conv_choice.inference_convolutions(bf16=False) == "winograd"
    assert conv_choice.inference_convolutions(bf16=True) == "direct"
    assert conv_choice.inference_convolutions(bf16=False) == "winograd" and calls == [False, True]  # once each
    record = json.loads(conv_choice._record_path(True).read_text())
    assert record == {"method": "direct", "ms": {"winograd": 9.0, "direct": 6.5}}
    monkeypatch.setattr(conv_choice, "_decided", {})  # a new process reads the records instead of measuring
    monkeypatch.setattr(conv_choice, "measure", lambda bf16: pytest.fail("measured again"))
    assert [conv_choice.inference_convolutions(b) for b in (False, True)] == ["winograd", "direct"]


def test_a_damaged_record_is_measured_again_and_a_read_only_cache_still_decides(fresh, monkeypatch):
    path = conv_choice._record_path(False)
    path.parent.mkdir(parents=True)
    path.write_text('{"method": "fft"')
    monkeypatch.setattr(conv_choice, "measure", lambda bf16: {"winograd": 5.0, "direct": 6.5})
    assert conv_choice.inference_convolutions(bf16=False) == "winograd"
    assert json.loads(path.read_text())["method"] == "winograd"

    monkeypatch.setattr(conv_choice, "_decided", {})
    blocked = fresh / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("EXIFKIT_CACHE", str(blocked))
    assert conv_choice.inference_convolutions(bf16=False) == "winograd"


@pytest.mark.parametrize("bf16", [False, True])
def test_the_measurement_times_both_methods_on_real_maps(bf16):
    if bf16 and not winograd.bf16_available():
        with pytest.raises(ValueError, match="AVX512-BF16"):
            conv_choice.measure(bf16=True)
        return
    ms = conv_choice.measure(bf16, patches=16, channels=16, size=16, repeats=1)
    assert set(ms) == set(conv_choice.METHODS) and all(t > 0 for t in ms.values())
