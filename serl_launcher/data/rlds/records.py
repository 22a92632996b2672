"""Reads the records of a TFRecord file, checking both CRCs and never trusting a declared length.

A record is: length (uint64, little-endian), masked crc32c of those 8 bytes,
the data, masked crc32c of the data. Why our own reader and not tfrecord's
`tfrecord_iterator`: it checks neither CRC (a flipped bit in a reward reads back
silently) and allocates whatever length a record declares (a 16-byte file
declaring a 300 MB record made it allocate ~487 MB). Here the length must have a
valid CRC, fit in what is left of the file and be at most `max_record_bytes`
before anything is allocated, and the data must match its CRC. Errors are
RLDSErrors naming the file and the record.
"""
import os
import struct
from typing import Iterator

import crc32c

from serl_launcher.data.rlds.errors import RLDSError

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C (rotated right by 15 bits, plus a constant)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str, max_record_bytes: int) -> Iterator[bytes]:
    """The data of each record in `path`, in order."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        index = 0
        while True:
            header = file.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                raise RLDSError(f"{path}: truncated in the header of record {index}")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise RLDSError(f"{path}: corrupt record {index} (its length's CRC does not match)")
            left = size - file.tell() - _FOOTER.size
            if length > left:
                raise RLDSError(f"{path}: truncated: record {index} declares {length} bytes, {max(left, 0)} are left")
            if length > max_record_bytes:
                raise RLDSError(f"{path}: record {index} of {length} bytes is over max_record_bytes={max_record_bytes}")
            data = file.read(length)
            (data_crc,) = _FOOTER.unpack(file.read(_FOOTER.size))
            if masked_crc(data) != data_crc:
                raise RLDSError(f"{path}: corrupt record {index} (its data's CRC does not match)")
            yield data
            index += 1
