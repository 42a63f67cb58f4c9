"""The git repository: blocks, bases, records and their history (the only dulwich user)."""
