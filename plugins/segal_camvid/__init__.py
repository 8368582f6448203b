"""segal_camvid plugin (work in progress)."""
