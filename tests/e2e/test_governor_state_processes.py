"""The tests of ``tests/unit/test_governor_state.py`` that start a real process.

That file: The shared state file, the learned-VRAM record and framework detection
"""

from __future__ import annotations

import os
import time

from runner.model import ProcessIdentity


def test_process_alive_agrees_with_identity_matches() -> None:
    import subprocess
    import sys

    from governor.store import process_alive
    from runner import identity

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ident = identity.identity_of(child.pid)
    assert ident is not None
    me = identity.identity_of(os.getpid())
    cases = [
        me,
        ident,
        None,
        ProcessIdentity(pid=1, start_ticks=0, boot_id=identity.boot_id()),
        ProcessIdentity(pid=os.getpid(), start_ticks=1, boot_id=identity.boot_id()),
        ProcessIdentity(
            pid=os.getpid(), start_ticks=me.start_ticks if me else 0, boot_id="another-boot"
        ),
    ]
    assert [process_alive(c) for c in cases] == [identity.matches(c) for c in cases]
    assert process_alive(ident)
    child.kill()
    deadline = time.monotonic() + 10
    while not identity.is_zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not process_alive(ident) and not identity.matches(ident)  # a zombie is not alive
    child.wait()
    assert not process_alive(ident)
