"""The embedded demo lab and its pacing."""
