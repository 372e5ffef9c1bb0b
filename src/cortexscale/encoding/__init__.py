"""cortexscale.encoding."""
