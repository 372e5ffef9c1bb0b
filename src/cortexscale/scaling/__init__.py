"""cortexscale.scaling."""
