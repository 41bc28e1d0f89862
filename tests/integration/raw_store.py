"""A C-STORE sender that sends a file's dataset bytes exactly as they are in the file.

DCMTK's senders (storescu, radraft send) parse the dataset and write it again, and DCMTK
repairs some values on the way (it drops the spaces in a UID). A test of how the listener
treats hostile bytes needs them to arrive untouched, so this speaks the DICOM upper layer
itself: A-ASSOCIATE-RQ with one presentation context (the file's SOP class and transfer
syntax), the C-STORE-RQ command, the dataset in P-DATA fragments, A-RELEASE.

usage: raw_store.py HOST PORT CALLING_AE CALLED_AE FILE
Prints "status 0xNNNN" (the C-STORE response status) and exits 0 when a response came, 2
when the association was rejected, 1 on any other failure.
"""
import socket
import struct
import sys


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the peer closed the connection")
        data += chunk
    return data


def read_pdu(sock):
    head = read_exact(sock, 6)
    length = struct.unpack(">I", head[2:6])[0]
    return head[0], read_exact(sock, length)


def even(b):
    return b + b"\0" if len(b) % 2 else b


def parse_file(path):
    """(transfer syntax UID, SOP class UID, SOP instance UID, dataset bytes) of a Part 10 file."""
    data = open(path, "rb").read()
    if data[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 file")
    pos, meta = 132, {}
    while pos + 8 <= len(data):
        group, elem = struct.unpack("<HH", data[pos:pos + 4])
        if group != 2:
            break
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack("<I", data[pos + 8:pos + 12])[0]
            start = pos + 12
        else:
            length = struct.unpack("<H", data[pos + 6:pos + 8])[0]
            start = pos + 8
        meta[elem] = data[start:start + length]
        pos = start + length
    uid = lambda v: v.rstrip(b"\0 ").decode()
    return uid(meta[0x10]), uid(meta[0x02]), uid(meta[0x03]), data[pos:]


def item(kind, body):
    return struct.pack(">BBH", kind, 0, len(body)) + body


def element(group, elem, value):
    return struct.pack("<HHI", group, elem, len(value)) + value


def main():
    host, port, calling, called, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    xfer, sop_class, sop_inst, dataset = parse_file(path)
    sock = socket.create_connection((host, port), timeout=30)

    ae = lambda t: t.encode().ljust(16)
    pc = bytes([1, 0, 0, 0]) + item(0x30, sop_class.encode()) + item(0x40, xfer.encode())
    body = (struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32)
            + item(0x10, b"1.2.840.10008.3.1.1.1") + item(0x20, pc)
            + item(0x50, item(0x51, struct.pack(">I", 16384))))
    sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
    kind, answer = read_pdu(sock)
    if kind == 3:
        print("association rejected: result %d source %d reason %d" % tuple(answer[1:4]))
        return 2
    if kind != 2:
        print("unexpected PDU type %d in answer to the association request" % kind)
        return 1
    pos, accepted = 68, False
    while pos + 4 <= len(answer):
        kind, length = answer[pos], struct.unpack(">H", answer[pos + 2:pos + 4])[0]
        if kind == 0x21 and answer[pos + 4] == 1 and answer[pos + 6] == 0:
            accepted = True
        pos += 4 + length
    if not accepted:
        print("the presentation context was not accepted")
        return 1

    command = (element(0, 0x0002, even(sop_class.encode())) + element(0, 0x0100, struct.pack("<H", 1))
               + element(0, 0x0110, struct.pack("<H", 1)) + element(0, 0x0700, struct.pack("<H", 0))
               + element(0, 0x0800, struct.pack("<H", 0)) + element(0, 0x1000, even(sop_inst.encode())))
    command = element(0, 0x0000, struct.pack("<I", len(command))) + command

    def pdata(fragment, control):
        pdv = struct.pack(">IBB", len(fragment) + 2, 1, control) + fragment
        sock.sendall(struct.pack(">BBI", 4, 0, len(pdv)) + pdv)

    pdata(command, 0x03)
    step = 16000
    for i in range(0, max(len(dataset), 1), step):
        pdata(dataset[i:i + step], 0x02 if i + step >= len(dataset) else 0x00)

    response = b""
    while True:
        kind, body = read_pdu(sock)
        if kind != 4:
            print("unexpected PDU type %d instead of the C-STORE response" % kind)
            return 1
        pos, last = 0, False
        while pos + 6 <= len(body):
            length = struct.unpack(">I", body[pos:pos + 4])[0]
            control = body[pos + 5]
            response += body[pos + 6:pos + 4 + length]
            last = last or (control & 0x03) == 0x03
            pos += 4 + length
        if last:
            break
    pos, status = 0, None
    while pos + 8 <= len(response):
        group, elem, length = struct.unpack("<HHI", response[pos:pos + 8])
        if (group, elem) == (0, 0x0900):
            status = struct.unpack("<H", response[pos + 8:pos + 10])[0]
        pos += 8 + length
    if status is None:
        print("the response has no status")
        return 1
    print("status 0x%04x" % status)
    sock.sendall(struct.pack(">BBI", 5, 0, 4) + bytes(4))
    try:
        read_pdu(sock)
    except (EOFError, OSError):
        pass
    sock.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, EOFError, ValueError, KeyError) as e:
        print("raw_store: %s" % e)
        sys.exit(1)
