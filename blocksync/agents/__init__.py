"""What agents call: tools (built-in and plugin) and data streams."""
