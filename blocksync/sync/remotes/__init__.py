"""Remotes: other stores' git repositories, pulled and pushed block by block."""
