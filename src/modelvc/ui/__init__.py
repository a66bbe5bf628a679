"""The web UI: server-rendered pages over the Registry API (`modelvc ui`, `/ui` on the server).

Pages read and act only through the public registry verbs (`port.UIRegistry`), so they
behave the same on the embedded default and on a registry on PostgreSQL + S3. Who may do
what is decided by the `access.Access` the app is built with: the local launcher's
(`modelvc ui`, one user, a per-launch key) or the server's (API tokens and roles).
"""
