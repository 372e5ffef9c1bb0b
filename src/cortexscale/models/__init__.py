"""cortexscale.models."""
