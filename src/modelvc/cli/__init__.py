"""The `modelvc` command."""
