"""segal_folder plugin (work in progress)."""
