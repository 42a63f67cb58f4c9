"""Reconciling blocks with outside sources: the protocol, the loop, folders and remotes."""
