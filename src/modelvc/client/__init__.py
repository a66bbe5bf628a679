"""The client side of a `modelvc server`: one HTTP transport and error decoder
(transport.py) and one resumable upload into the server's upload sessions (uploads.py),
shared by RemoteRegistry (modelvc.remote) and push/pull (modelvc.transfer.http). It
imports nothing of modelvc.server: the wire format both speak is modelvc.wire."""
