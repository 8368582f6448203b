"""segal_voc plugin (work in progress)."""
