"""Writes a Deflated Explicit VR Little Endian Part 10 file whose pixel data is MIB MiB of
zeros, streamed through zlib (about 1 MB on disk per GiB inflated): a deflate bomb, or with
a small size an ordinary deflated instance.

usage: make_deflated.py OUT MIB SOP_INSTANCE_UID
The study and series UIDs are the SOP Instance UID with .1 and .2 appended.
"""
import struct, sys, zlib
path, mib, uid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def even(b): return b + b"\0" if len(b) % 2 else b
def el(g, e, vr, v):
    if vr in (b"OB", b"OW", b"UN"):
        return struct.pack("<HH2sHI", g, e, vr, 0, len(v)) + v
    return struct.pack("<HH2sH", g, e, vr, len(v)) + v
sc = b"1.2.840.10008.5.1.4.1.1.7"
meta = (el(2, 1, b"OB", b"\0\1") + el(2, 2, b"UI", even(sc)) + el(2, 3, b"UI", even(uid.encode()))
        + el(2, 0x10, b"UI", even(b"1.2.840.10008.1.2.1.99")))
head = (el(8, 0x16, b"UI", even(sc)) + el(8, 0x18, b"UI", even(uid.encode())) + el(8, 0x60, b"CS", b"OT")
        + el(0x20, 0xd, b"UI", even((uid + ".1").encode())) + el(0x20, 0xe, b"UI", even((uid + ".2").encode()))
        + struct.pack("<HH2sHI", 0x7fe0, 0x10, b"OB", 0, mib << 20))
z = zlib.compressobj(9, zlib.DEFLATED, -15)
with open(path, "wb") as f:
    f.write(bytes(128) + b"DICM" + el(2, 0, b"UL", struct.pack("<I", len(meta))) + meta)
    f.write(z.compress(head))
    zeros = bytes(1 << 20)
    for _ in range(mib):
        f.write(z.compress(zeros))
    f.write(z.flush())
    if (f.tell() - 132) % 2:  # a deflated stream of odd length gets one NUL (PS3.5 A.5)
        f.write(b"\0")
