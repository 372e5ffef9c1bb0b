"""cortexscale.train."""
