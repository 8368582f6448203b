"""segal_uncertainty plugin (work in progress)."""
