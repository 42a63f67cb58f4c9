"""Permission rules: gitignore/wildmatch globs to levels, first match wins (pure, no I/O).

A plugin declares its rules; the user's config may narrow them, never widen them: the level
for a path is the lower of the two. A path no plugin rule matches is read-only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from dulwich.wildmatch import MalformedPattern, translate

from blocksync.errors import ConfigError
from blocksync.shared.wit import PermissionLevel, PermissionRule

#: the rules of a source or plugin that names none: read and write everywhere
DEFAULT_RULES = (PermissionRule("**", PermissionLevel.READ_WRITE),)


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[bytes]:
    # as in .gitignore: a pattern without a slash matches at any depth; a leading slash anchors
    glob = (
        pattern[1:]
        if pattern.startswith("/")
        else (pattern if "/" in pattern.rstrip("/") else f"**/{pattern}")
    )
    try:
        # DOTALL: a wildcard matches any byte but "/", a newline too (as git's wildmatch);
        # without it a file named with a newline matched no pattern and vanished unreported
        return re.compile(translate(glob.encode("utf-8")), re.DOTALL)
    except (MalformedPattern, re.error) as exc:
        raise ConfigError(f"permission pattern {pattern!r} is not a valid glob: {exc}") from exc


def matches(pattern: str, path: str) -> bool:
    # surrogateescape: a name that is not UTF-8 (undecodable bytes as lone surrogates) is
    # matched by its bytes, never an error that fails the whole source
    return _compiled(pattern).fullmatch(path.encode("utf-8", "surrogateescape")) is not None


def first_match(path: str, rules: Sequence[PermissionRule]) -> PermissionLevel | None:
    for rule in rules:
        if matches(rule.pattern, path):
            return rule.permission
    return None


def level_for(
    path: str,
    plugin_rules: Sequence[PermissionRule],
    config_rules: Sequence[PermissionRule] | None = None,
) -> PermissionLevel:
    """The plugin's level for ``path``, lowered (never raised) by the user's rules."""
    level = first_match(path, plugin_rules) or PermissionLevel.READ_ONLY
    if config_rules is not None:
        narrowed = first_match(path, config_rules) or PermissionLevel.READ_ONLY
        if narrowed.rank < level.rank:
            level = narrowed
    return level
