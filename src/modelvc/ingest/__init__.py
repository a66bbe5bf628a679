"""The one write path below the Registry API: every writer records versions and moves
refs through here (local commit, commit over HTTP, Hugging Face uploads, transfer
receivers), so the write order (objects -> manifest -> one transaction), the branch
compare-and-swap with re-parenting, and the audit entries exist once.

    record.py      a version from its file entries: manifest, one transaction, re-parenting
    amend.py       a version from its parent plus a few added/replaced/deleted files
    entries.py     rows for file entries whose segments a client uploaded (checked)
    received.py    a version that arrived whole from another registry (push, pull)
    references.py  which stored tensor a new tensor deltas against
    refs.py        ref moves by compare-and-swap with their audit entry; ancestry walks
"""
