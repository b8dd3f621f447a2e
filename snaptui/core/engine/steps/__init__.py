"""The steps workflows are made of, each with its undo."""
