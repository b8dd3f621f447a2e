"""Everything checked before the guest is touched, and the mode decision."""
