"""The papermill runner on small stand-in notebooks: order, provenance, a failure that names notebook and
cell, and quiet kernels (the demo notebooks themselves run in test_notebooks.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from exifkit.config import load_profile
from exifkit.runner import NotebookFailed, run_notebooks


def _fake_checkout(root, tmp_path, body):
    fake = tmp_path / "checkout"
    (fake / "notebooks").mkdir(parents=True)
    shutil.copytree(root / "data_manifests", fake / "data_manifests")
    header = '# %% tags=["parameters"]\nprofile = "demo"\nresults_dir = "x"\nseed = 0\n\n'
    (fake / "notebooks" / "00_ok.py").write_text(header + "# %%\nx = 1\n")
    (fake / "notebooks" / "01_broken.py").write_text(header + "# %%\ny = 2\n\n# %%\n" + body + "\n")
    (fake / "notebooks" / "02_never.py").write_text(header + "# %%\nz = 3\n")
    return fake


@pytest.mark.slow
def test_failure_names_notebook_and_cell_and_keeps_earlier_results(root, tmp_path):
    fake = _fake_checkout(root, tmp_path, "raise ValueError('bad threshold')")
    profile = load_profile("demo", root=fake)
    out = tmp_path / "out"
    with pytest.raises(NotebookFailed) as info:
        run_notebooks(profile, names=("00", "01", "02"), output_dir=out, progress=False)
    message = str(info.value)
    assert "01_broken failed at cell" in message and "ValueError: bad threshold" in message
    assert (out / "00_ok.ipynb").is_file() and not (out / "02_never.ipynb").exists()
    prov = json.loads((out / "provenance.json").read_text())
    assert [n["status"] for n in prov["notebooks"]] == ["ok", "failed"]


@pytest.mark.slow
def test_a_partial_rerun_is_appended_to_the_provenance(root, tmp_path, capfd):
    fake = _fake_checkout(root, tmp_path, "y = 3")
    profile = load_profile("demo", root=fake)
    profile = dataclasses.replace(profile, notebooks=["00_ok", "01_broken", "02_never"])
    out = tmp_path / "out"
    run_notebooks(profile, output_dir=out, progress=False)
    run_notebooks(profile, names=("01",), output_dir=out, progress=False, parameters={"why": "fixed a cell"})
    prov = json.loads((out / "provenance.json").read_text())
    assert [n["name"] for n in prov["notebooks"]] == ["00_ok", "01_broken", "02_never"]
    assert [[n["name"] for n in r["notebooks"]] for r in prov["reruns"]] == [["01_broken"]]
    assert prov["reruns"][0]["parameters"]["why"] == "fixed a cell"
    run_notebooks(profile, output_dir=out, progress=False)  # a full run starts a fresh record
    assert "reruns" not in json.loads((out / "provenance.json").read_text())
    # the kernels talk over local sockets: no "running over TCP without encryption" warning, nothing left
    # behind, and every kernel was shut down (one left running warns later that its parent went away)
    assert "WARNING" not in capfd.readouterr().err
    assert not list(fake.glob("kernel*")) and not _kernels_still_running()


def _kernels_still_running() -> list[str]:
    import os
    from pathlib import Path

    running = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and b"ipykernel" in (proc / "cmdline").read_bytes():
                running.append(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return running


def test_executed_notebooks_get_no_progress_bars_and_the_setting_is_restored(monkeypatch):
    import os

    from exifkit.progress import bars_disabled

    from exifkit.progress import progress_bar

    monkeypatch.setenv("TQDM_DISABLE", "0")
    with bars_disabled():
        assert os.environ["TQDM_DISABLE"] == "1"
        assert progress_bar(range(3), disable=False).disable  # the kit's bars ask for themselves explicitly
    assert os.environ["TQDM_DISABLE"] == "0"
    assert not progress_bar(range(3), disable=False).disable
    monkeypatch.delenv("TQDM_DISABLE")
    with bars_disabled():
        pass
    assert "TQDM_DISABLE" not in os.environ
