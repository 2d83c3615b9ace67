"""Classical reconstructions: zero-filled, CG-SENSE, GRAPPA, L+S."""
