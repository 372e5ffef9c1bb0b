"""cortexscale.features."""
