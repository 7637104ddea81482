"""CLI command groups. Each public module here has `register(apps)`, called by `polysafe.cli`."""
