"""segal_oracle plugin (work in progress)."""
