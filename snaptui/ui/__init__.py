"""The Textual dashboard: app, panes, dialogs and screens over snaptui.core."""

import os

# Textual paints at most MAX_FPS frames a second (read once, when textual is first imported):
# a key that lands just after a frame waits for the next tick. At 120 the cursor follows a key
# in ~15 ms instead of ~28 (benchmarks/dashboard.py); frames are still only sent when
# something changed. TEXTUAL_FPS in the environment wins.
os.environ.setdefault("TEXTUAL_FPS", "120")
