"""A slow or silent DICOM client: it opens connections and sends only the start of an
association request, to test that such peers hold up nobody else.

usage: slow_client.py HOST PORT SOURCE_ADDRESS N silent|drip HOLD_SECONDS
Opens N connections from SOURCE_ADDRESS (a loopback address such as 127.0.0.2 stands for
another peer), each sending the first 8 bytes of an A-ASSOCIATE-RQ (a 6-byte header that
announces 204 more bytes); in mode "drip" one more byte a second follows on each. Prints
"connected N", and "closed I T" when the server closes connection I after T seconds; ends
when all are closed or after HOLD_SECONDS, printing how many were still open.
"""
import socket, sys, time
host, port, src, n, mode, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
t0 = time.time()
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((src, 0))
    s.connect((host, port))
    try:
        s.send(b"\x01\x00\x00\x00\x00\xcc\x00\x01")
    except OSError:
        pass
    socks.append(s)
print("connected", n, flush=True)
closed = set()
while time.time() - t0 < hold and len(closed) < n:
    for i, s in enumerate(socks):
        if i in closed:
            continue
        s.settimeout(0.02)
        try:
            if s.recv(1) == b"":
                raise OSError
        except socket.timeout:
            if mode == "drip":
                try:
                    s.send(b"\x00")
                except OSError:
                    closed.add(i)
                    print("closed", i, round(time.time() - t0, 1), flush=True)
        except OSError:
            closed.add(i)
            print("closed", i, round(time.time() - t0, 1), flush=True)
    time.sleep(1.0 if mode == "drip" else 0.1)
print("open at the end", n - len(closed), flush=True)
