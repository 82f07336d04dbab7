#!/usr/bin/env python3
"""Baseline for bench/fleet-connect.sh: N raw-socket MQTT 5 clients (no client library) connect
with user name = device id and the password derived like ota-fleet-sim's (HMAC-SHA256 of the
secret), at most WINDOW connections in progress, one selector loop; prints one JSON line with the
time from the first connect to the last CONNACK. Every loop is bounded by a deadline."""
import hashlib, hmac, json, selectors, socket, sys, time

host, port, n, secret = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
window = int(sys.argv[5]) if len(sys.argv) > 5 else 64
deadline = time.monotonic() + 120


def utf8(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def varint(x):
    out = bytearray()
    while True:
        b, x = x % 128, x // 128
        out.append(b | (0x80 if x else 0))
        if not x:
            return bytes(out)


def connect_packet(cid):
    password = hmac.new(secret.encode(), cid.encode(), hashlib.sha256).hexdigest()[:32]
    # protocol name, level 5, flags: user name + password + clean start, keepalive 60, no properties
    var = utf8("MQTT") + bytes([5, 0xC2]) + (60).to_bytes(2, "big") + b"\x00"
    payload = utf8(cid) + utf8(cid) + utf8(password)
    body = var + payload
    return b"\x10" + varint(len(body)) + body


sel = selectors.DefaultSelector()
socks, started, done, nxt, pending = [], None, 0, 0, 0
refused = 0
while (done + refused < n) and time.monotonic() < deadline:
    while pending < window and nxt < n:
        cid = "device-%05d" % (nxt + 1)
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        sel.register(s, selectors.EVENT_WRITE, [cid, b""])
        socks.append(s)
        started = started or time.monotonic()
        nxt += 1
        pending += 1
    for key, ev in sel.select(0.1):
        s, data = key.fileobj, key.data
        if ev & selectors.EVENT_WRITE:
            s.send(connect_packet(data[0]))
            sel.modify(s, selectors.EVENT_READ, data)
            continue
        chunk = s.recv(64)
        data[1] += chunk
        if len(data[1]) >= 4 or not chunk:
            sel.unregister(s)
            pending -= 1
            if chunk and data[1][0] == 0x20 and data[1][3] == 0:
                done += 1
            else:
                refused += 1
elapsed = time.monotonic() - started
print(json.dumps({"devices": n, "connected": done, "refused": refused, "connect_ms": round(elapsed * 1000)}))
for s in socks:
    s.close()
