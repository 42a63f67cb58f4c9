"""Building plugins from source (componentize-py, componentize-js)."""
