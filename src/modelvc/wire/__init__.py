"""The wire format the client (modelvc.client) and the server (modelvc.server) share;
pure (no HTTP library), so neither side imports the other.

    values.py  JSON of the API's dataclass results, and back by their type hints
    frames.py  the framed body of an upload request: chunks with their BLAKE3
"""
