"""segal_label_studio: ``--oracle label-studio``, annotators in Label Studio (placeholder
until the plugin lands; registers nothing)."""
