"""Proving an image boots: a throwaway domain on an overlay of the image."""
