"""Keeping what matters: rotation (Nova's createBackup), retention (Proxmox's keep-* rules),
schedules on systemd timers and re-verification of stale images.

``retention`` and ``rotation`` are pure rules over image records (the engine's job process
rotates with them); ``prune``, ``schedules`` and ``stale`` drive the stores and snapshot jobs.
"""
