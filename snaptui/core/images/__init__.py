"""Image stores (Glance, the local library) and the properties an image carries."""
