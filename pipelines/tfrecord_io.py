"""Deterministic GZIP TFRecord shards, written without TensorFlow.

Beam's ``WriteToTFRecord`` assigns records to shards from a random start, so two runs give
different files. The pipeline instead groups records by an explicit shard key, sorts each shard,
and writes it here: the same input gives byte-identical files (gzip ``mtime`` = 0), so the
manifest's SHA-256 identifies the candidate files across runs and machines.

TFRecord framing: ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from typing import BinaryIO, Iterable, Iterator

import google_crc32c
from apache_beam.io.filesystems import FileSystems

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
    """One framed TFRecord."""
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", _masked_crc(length)), data,
                     struct.pack("<I", _masked_crc(data))))


def write_gzip_tfrecords(path: str, records: Iterable[bytes]) -> int:
    """Writes records to a GZIP TFRecord file on any Beam filesystem.

    Args:
        path: Destination (local path or e.g. ``gs://``).
        records: Serialized records, in the order to write.

    Returns:
        The number of records written.
    """
    count = 0
    with FileSystems.create(path, mime_type="application/octet-stream",
                            compression_type="uncompressed") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
            for data in records:
                out.write(encode_record(data))
                count += 1
    return count


def read_tfrecords(fileobj: BinaryIO) -> Iterator[bytes]:
    """Reads framed records from an (already decompressed) binary stream, checking the CRCs."""
    while True:
        header = fileobj.read(12)
        if not header:
            return
        if len(header) != 12:
            raise ValueError("Truncated TFRecord header.")
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc(header[:8]) != length_crc:
            raise ValueError("TFRecord length CRC mismatch.")
        data = fileobj.read(length)
        trailer = fileobj.read(4)
        if len(data) != length or len(trailer) != 4:
            raise ValueError("Truncated TFRecord.")
        (data_crc,) = struct.unpack("<I", trailer)
        if _masked_crc(data) != data_crc:
            raise ValueError("TFRecord data CRC mismatch.")
        yield data


def read_gzip_tfrecords(path: str) -> Iterator[bytes]:
    """Reads every record of a GZIP TFRecord file on any Beam filesystem."""
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield from read_tfrecords(stream)


def records_sha256(path: str) -> str:
    """Hex SHA-256 of a GZIP TFRecord file's *decompressed* bytes.

    Unlike the file hash it does not depend on the zlib build that compressed the file, so it
    identifies the same examples across machines and runners.
    """
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str) -> str:
    """Hex SHA-256 of a file's bytes on any Beam filesystem."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
