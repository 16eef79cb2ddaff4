#!/usr/bin/env python3
"""A lib-chan client written from docs/PROTOCOL.md alone, with Python's standard library only.

Usage: kvs_client.py HOST PORT SERVICE SECRET
Runs the book's session against the name server and prints each answer as a Python value, one per line.
"""
import base64
import hashlib
import hmac
import os
import socket
import stringprep
import struct
import sys
import unicodedata


class Atom(str):
    """An Erlang atom (ext type 1)."""


class Tuple(tuple):
    """An Erlang tuple (ext type 2)."""


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, Atom):
        name = v.encode()
        return b"\xc7" + bytes([len(name), 1]) + name
    if isinstance(v, Tuple):
        body = pack(list(v))
        return b"\xc7" + bytes([len(body), 2]) + body if len(body) < 256 else b"\xc8" + struct.pack(">HB", len(body), 2) + body
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(type(v))


def length(b, i, t, fix_mask, wide):
    """A str, array, map or ext length: in the type byte's low bits, or in the 1, 2 or 4 bytes that follow it."""
    if t in wide:
        size = wide[t]
        return int.from_bytes(b[i:i + size], "big"), i + size
    return t & fix_mask, i


def unpack(b, i=0):
    t = b[i]
    i += 1
    if t < 0x80:
        return t, i
    if t >= 0xE0:
        return t - 256, i
    if 0xA0 <= t < 0xC0 or t in (0xD9, 0xDA, 0xDB):
        n, i = length(b, i, t, 0x1F, {0xD9: 1, 0xDA: 2, 0xDB: 4})
        return b[i:i + n].decode(), i + n
    if 0x90 <= t < 0xA0 or t in (0xDC, 0xDD):
        n, i = length(b, i, t, 0x0F, {0xDC: 2, 0xDD: 4})
        out = []
        for _ in range(n):
            x, i = unpack(b, i)
            out.append(x)
        return out, i
    if 0x80 <= t < 0x90 or t in (0xDE, 0xDF):
        n, i = length(b, i, t, 0x0F, {0xDE: 2, 0xDF: 4})
        out = {}
        for _ in range(n):
            k, i = unpack(b, i)
            out[k], i = unpack(b, i)
        return out, i
    if t in (0xC7, 0xC8, 0xC9):
        n, i = length(b, i, t, 0, {0xC7: 1, 0xC8: 2, 0xC9: 4})
        kind = b[i]
        i += 1
        payload = b[i:i + n]
        if kind == 1:
            return Atom(payload.decode()), i + n
        if kind == 2:
            return Tuple(unpack(payload)[0]), i + n
        raise ValueError("extension %d" % kind)
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if t in fixed:
        return fixed[t], i
    ints = {0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
            0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8), 0xCB: (">d", 8)}
    if t in ints:
        fmt, size = ints[t]
        return struct.unpack(fmt, b[i:i + size])[0], i + size
    raise ValueError("type byte 0x%02x" % t)


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=10)

    def send(self, msg):
        body = pack(msg)
        self.s.sendall(struct.pack(">I", len(body)) + body)

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.s.recv(n - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    def recv(self):
        while True:
            (n,) = struct.unpack(">I", self.recv_exact(4))
            msg = unpack(self.recv_exact(n))[0]
            if msg[0] == "ping":
                self.send(["pong", msg[1]])
                continue
            if msg[0] == "close":
                raise RuntimeError("closed: %s: %s" % (msg[1], msg[2]))
            return msg


def saslprep(secret):
    """RFC 4013 for stored strings, from Python's stringprep tables: an implementation independent of lib-chan's."""
    # A character in both tables (U+200B) becomes a space: docs/PROTOCOL.md, "Preparing the secret".
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in secret
        if stringprep.in_table_c12(ch) or not stringprep.in_table_b1(ch)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
        stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9, stringprep.in_table_a1,
    )
    if any(table(ch) for ch in prepared for table in prohibited):
        raise ValueError("usage: the secret holds a character SASLprep refuses")
    if any(stringprep.in_table_d1(ch) for ch in prepared) and (
        any(stringprep.in_table_d2(ch) for ch in prepared)
        or not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1]))
    ):
        raise ValueError("usage: the secret breaks SASLprep's bidirectional rule")
    if prepared == "" and secret != "":
        raise ValueError("usage: the secret is empty once prepared")
    return prepared


def connect(host, port, service, secret):
    c = Conn(host, port)
    cnonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=%s,r=%s" % (service.replace("=", "=3D").replace(",", "=2C"), cnonce)
    c.send(["startService", {"version": 1, "service": service, "args": None, "scram": "n,," + first_bare}])
    challenge = c.recv()
    assert challenge[0] == "challenge", challenge
    server_first = challenge[1]["scram"]
    fields = dict(kv.split("=", 1) for kv in server_first.split(","))
    nonce, salt, iterations = fields["r"], base64.b64decode(fields["s"]), int(fields["i"])
    assert nonce.startswith(cnonce) and 4096 <= iterations <= 1000000
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(secret).encode(), salt, iterations, 32)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = "c=biws,r=" + nonce
    auth = ",".join([first_bare, server_first, without_proof]).encode()
    signature = hmac.new(stored_key, auth, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    c.send(["response", {"scram": without_proof + ",p=" + base64.b64encode(proof).decode()}])
    ack = c.recv()
    assert ack[0] == "ack", ack
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = "v=" + base64.b64encode(hmac.new(server_key, auth, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(ack[1]["scram"], expected):
        raise RuntimeError("badServer: the server did not prove it knows the secret")
    return c


def main():
    host, port, service, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    c = connect(host, port, service, secret)
    next_id = [0]

    def rpc(x):
        next_id[0] += 1
        c.send(["rpc", next_id[0], x])
        while True:
            m = c.recv()
            if m[0] == "reply" and m[1] == next_id[0]:
                return m[2]

    c.send(["cast", Tuple([Atom("store"), Atom("joe"), "writing a book"])])
    print(repr(rpc(Tuple([Atom("lookup"), Atom("joe")]))))
    print(repr(rpc(Tuple([Atom("lookup"), Atom("jim")]))))
    # A float stays a float, even a whole one; and {k, 1.0} is not the key {k, 1}.
    rpc(Tuple([Atom("store"), Tuple([Atom("k"), 1.0]), 1.0]))
    print(repr(rpc(Tuple([Atom("lookup"), Tuple([Atom("k"), 1.0])]))))
    print(repr(rpc(Tuple([Atom("lookup"), Tuple([Atom("k"), 1])]))))
    c.send(["close", "normal", "done"])


if __name__ == "__main__":
    main()
