"""Files and folders opened without following links: the only module that writes to disk."""
