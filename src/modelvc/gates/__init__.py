"""Promotion governance: the policy file, gates, roles (see authority.py)."""
