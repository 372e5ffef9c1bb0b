"""cortexscale.data."""
