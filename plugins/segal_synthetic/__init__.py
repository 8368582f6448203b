"""segal_synthetic plugin (work in progress)."""
