"""segal_smp plugin (work in progress)."""
