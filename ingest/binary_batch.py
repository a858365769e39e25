"""The compact binary batch form of detector readings (topic ``{prefix}detectors/batch/bin``).

Little-endian throughout. One message::

    offset  size        field
    0       4           magic  b"RPB1"
    4       4  uint32   n_records
    8       4  uint32   n_ids        entries in the id dictionary
    12      4  uint32   ids_bytes    length of the dictionary
    16      ids_bytes   dictionary   the detector ids, UTF-8, separated by b"\\n" (no trailing one)
    16+ids_bytes  n_records × 32     records, fixed width:

    record offset  type     field
    0              uint32   id_ref         index into the dictionary
    4              int16    lane           0 = rightmost; -1 = not given
    6              uint16   reserved       0
    8              float64  ts             end of the counting interval, epoch seconds (UTC)
    16             float32  interval_s
    20             float32  count          vehicles (a whole number)
    24             float32  occupancy_pct  0..100
    28             float32  speed_kmh      NaN = null (no vehicle, or a single loop)

The message length must be exactly ``16 + ids_bytes + 32 * n_records``. Each record is validated
with the same rules and the same rejection codes as a JSON reading; a bad record refuses itself
only (``records[i]: ...``), a bad header refuses the message (``bad_shape``).

Parsing is ``numpy.frombuffer`` over the records (no copy) plus one dictionary lookup per id, so a
message of 10,000 readings costs about as much as a dozen JSON readings.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from ingest._values import RefusalError

MAGIC = b"RPB1"
HEADER = struct.Struct("<4sIII")
#: Topic suffix after ``{prefix}detectors/``.
BINARY_TOPIC_SUFFIX = "batch/bin"
#: Where ingest workers (``roadpulse ingest-worker``) publish the readings they validated, in the
#: same format; the engine started with ``ingest.from_workers`` reads only this topic.
VALIDATED_TOPIC_SUFFIX = "validated/bin"

RECORD_DTYPE = np.dtype(
    [
        ("id_ref", "<u4"),
        ("lane", "<i2"),
        ("reserved", "<u2"),
        ("ts", "<f8"),
        ("interval_s", "<f4"),
        ("count", "<f4"),
        ("occupancy_pct", "<f4"),
        ("speed_kmh", "<f4"),
    ]
)
assert RECORD_DTYPE.itemsize == 32


def encode_binary_batch(
    detector_ids: Sequence[str],
    ts: np.ndarray,
    interval_s: np.ndarray,
    count: np.ndarray,
    occupancy_pct: np.ndarray,
    speed_kmh: np.ndarray,
    lane: np.ndarray | None = None,
) -> bytes:
    """One message from columns (``detector_ids[i]`` is record i's detector; NaN speed = null)."""
    n = len(detector_ids)
    ids: dict[str, int] = {}
    refs = np.fromiter((ids.setdefault(d, len(ids)) for d in detector_ids), dtype=np.uint32, count=n)
    for d in ids:
        if "\n" in d:
            raise ValueError(f"detector id {d!r} contains a newline, which the dictionary uses as separator")
    dictionary = "\n".join(ids).encode("utf-8")
    records = np.zeros(n, dtype=RECORD_DTYPE)
    records["id_ref"] = refs
    records["lane"] = -1 if lane is None else lane
    records["ts"] = ts
    records["interval_s"] = interval_s
    records["count"] = count
    records["occupancy_pct"] = occupancy_pct
    records["speed_kmh"] = speed_kmh
    return HEADER.pack(MAGIC, n, len(ids), len(dictionary)) + dictionary + records.tobytes()


def decode_binary_batch(payload: bytes, *, max_records: int) -> tuple[bytes, list[str], np.ndarray]:
    """The dictionary (raw bytes and ids) and the record array (a read-only view of ``payload``).

    Raises `RefusalError` (``bad_shape`` or ``too_large``) when the framing is wrong.
    """
    if len(payload) < HEADER.size:
        raise RefusalError(
            "bad_shape", f"binary batch of {len(payload)} bytes is shorter than its 16-byte header"
        )
    magic, n_records, n_ids, ids_bytes = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise RefusalError("bad_shape", f"binary batch must start with {MAGIC!r}, got {bytes(magic)!r}")
    if n_records > max_records:
        raise RefusalError(
            "too_large", f"batch of {n_records} readings exceeds the limit of {max_records}; split it"
        )
    expected = HEADER.size + ids_bytes + RECORD_DTYPE.itemsize * n_records
    if len(payload) != expected:
        raise RefusalError(
            "bad_shape",
            f"binary batch header announces {n_records} records and a {ids_bytes}-byte dictionary "
            f"({expected} bytes in all) but the message has {len(payload)} bytes",
        )
    raw = bytes(payload[HEADER.size : HEADER.size + ids_bytes])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefusalError(
            "bad_shape", f"binary batch dictionary is not UTF-8 (offset {exc.start})"
        ) from None
    ids = text.split("\n") if n_ids else []
    if len(ids) != n_ids:
        raise RefusalError(
            "bad_shape", f"binary batch header announces {n_ids} ids but the dictionary holds {len(ids)}"
        )
    records = np.frombuffer(payload, dtype=RECORD_DTYPE, count=n_records, offset=HEADER.size + ids_bytes)
    return raw, ids, records
