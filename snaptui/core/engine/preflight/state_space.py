"""Room in the state dir, checked by preflight beside the scratch dir's.

The journal, the audit log and the locks live in the state dir. A job whose journal cannot
grow still restarts its guest (core/engine/journal_writer.py keeps a reserve), but a job is
not started on a state dir that is already nearly full, nor on a scratch dir whose extracted
image would fill the state dir's filesystem (the default: both under the same directory).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from snaptui.core.errors import BadInput
from snaptui.core.paths import state_dir
from snaptui.core.present import size_text

STATE_ROOM = 16 << 20  # journals, logs and audit records of many jobs; far more than one needs


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_state_space(scratch: Path, scratch_needed: int) -> None:
    """BadInput (one line) when the state dir has less than STATE_ROOM free, counting the
    scratch need too when scratch is on the same filesystem."""
    state = _existing(state_dir())
    free = shutil.disk_usage(state).free
    shared = os.stat(state).st_dev == os.stat(_existing(scratch)).st_dev
    needed = STATE_ROOM + (scratch_needed if shared else 0)
    if needed <= free:
        return
    besides = (f" besides {size_text(scratch_needed)} for the "
               f"extracted image in {scratch}" if shared else "")
    raise BadInput(f"not enough space in the state dir {state} for the journal: need "
                   f"{size_text(STATE_ROOM)}{besides}, "
                   f"{size_text(free)} free"
                   + ("; set SNAPTUI_SCRATCH_DIR to another filesystem" if shared else ""))
