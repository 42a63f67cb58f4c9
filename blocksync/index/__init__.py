"""index.db: the SQLite tables beside the git store (the only sqlite3/sqlite-utils user)."""
