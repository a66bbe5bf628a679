"""Blob stores: opaque bytes under content ids (see base.py for the protocol)."""
