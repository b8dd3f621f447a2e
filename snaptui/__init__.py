"""snaptui: turn libvirt guest disks into Glance images, visibly and safely."""

__version__ = "0.1.0"
