"""Metadata (SQL): models, versions, refs and their history, objects."""
