"""The git repository: blocks, bases, records and their history, through dulwich (remotes'
transport and the wildmatch globs of permission rules use dulwich too, for what it offers there)."""
