"""cortexscale.report."""
