"""segal_cityscapes plugin (work in progress)."""
