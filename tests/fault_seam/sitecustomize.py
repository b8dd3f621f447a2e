"""Loaded by Python at start-up in a job process whose PYTHONPATH holds this directory
(tests only, see snaptui_faults.install_in): installs the fault-injecting domain wrapper."""

import os

if os.environ.get("SNAPTUI_FAULT"):
    import snaptui_faults

    snaptui_faults.install()
