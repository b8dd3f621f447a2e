"""Many hosts: the host list, SSH to another host's snaptui, its jobs and inventory."""
