"""Disk files: the qemu-img adapter and the streamed qcow2 writer."""
