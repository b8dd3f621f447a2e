"""The libvirt adapter: the host, its domains' XML and events, QEMU's access."""
