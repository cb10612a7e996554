import subprocess
import sys

import pytest

PROBE = "import exifkit.runtime as r, exifkit; print(r.allocator_tuned())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_importing_exifkit_keeps_freed_memory_unless_told_not_to():
    import os

    tuned = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert tuned.stdout.strip() == "True"
    env = {**os.environ, "EXIFKIT_MALLOC": "default"}
    plain = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    assert plain.stdout.strip() == "False"
