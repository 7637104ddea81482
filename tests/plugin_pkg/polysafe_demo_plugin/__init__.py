"""A demo third-party polysafe plugin (tests only)."""
