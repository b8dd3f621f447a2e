"""Ceph RBD disks: the cluster a domain's disk lives on, its images, snapshots and clones.

An adapter over python3-rados and python3-rbd (Debian's, linked into the venv by
scripts/setup); imported lazily, so snaptui runs where they are not installed and says so.
"""
