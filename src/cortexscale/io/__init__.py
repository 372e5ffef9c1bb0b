"""cortexscale.io."""
