"""Plant damage in a stored object, wherever its store keeps it (loose or in a pack).

The object is rewritten through `ObjectStore.replace` (the loose copy then shadows a
packed one), so a test damages what a reader will read without knowing the layout."""

from __future__ import annotations

from collections.abc import Callable

from modelvc.objects import ObjectStore


def edit_object(store: ObjectStore, oid: str, edit: Callable[[bytearray], object]) -> bytes:
    """Apply EDIT to the stored bytes of OID and store the result; the new bytes."""
    data = bytearray(store.get(oid))
    edit(data)
    store.replace(oid, bytes(data))
    return bytes(data)


def flip_byte(store: ObjectStore, oid: str, offset: int, mask: int = 0x40) -> None:
    """XOR one byte of OID's stored bytes (a negative offset counts from the end)."""
    def flip(data: bytearray) -> None:
        data[offset] ^= mask

    edit_object(store, oid, flip)
