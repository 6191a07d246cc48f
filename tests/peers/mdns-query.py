#!/usr/bin/python3
"""A legacy unicast mDNS querier (RFC 6762 §6.7): one query from an ephemeral port to 224.0.0.251:5353 with id 0x4242,
optionally listing known answers (PTR records the querier already has, TTL 4500), and the unicast reply printed as
JSON (id, questions, answers with name, type, ttl, cache-flush bit and data). Nothing but the standard library.

usage: mdns-query.py INTERFACE-ADDRESS NAME TYPE(A|PTR|SRV|TXT) [KNOWN-PTR-TARGET ...]
"""
import json, socket, struct, sys

TYPES = {"A": 1, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33, "NSEC": 47, "ANY": 255}
NAMES = {v: k for k, v in TYPES.items()}

def encode(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"

def decode(msg, at):
    labels, end, hops = [], None, 0
    while True:
        n = msg[at]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = at + 2
            at = ((n & 0x3F) << 8) | msg[at + 1]
            hops += 1
            if hops > 50:
                raise ValueError("pointer loop")
            continue
        if n == 0:
            return ".".join(labels), (end if end is not None else at + 1)
        labels.append(msg[at + 1:at + 1 + n].decode())
        at += 1 + n

iface, name, qtype = sys.argv[1], sys.argv[2], TYPES[sys.argv[3]]
known = b"".join(encode(name) + struct.pack(">HHIH", 12, 1, 4500, len(encode(t))) + encode(t) for t in sys.argv[4:])
query = struct.pack(">HHHHHH", 0x4242, 0, 1, len(sys.argv[4:]), 0, 0) + encode(name) + struct.pack(">HH", qtype, 1) + known
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
s.bind((iface, 0))
s.settimeout(3)
s.sendto(query, ("224.0.0.251", 5353))
try:
    msg, sender = s.recvfrom(9000)
except socket.timeout:
    print(json.dumps({"reply": False}))
    sys.exit(0)
mid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
at, questions, answers = 12, [], []
for _ in range(qd):
    qn, at = decode(msg, at)
    t, c = struct.unpack(">HH", msg[at:at + 4]); at += 4
    questions.append({"name": qn, "type": NAMES.get(t, t)})
for i in range(an + ns + ar):
    rn, at = decode(msg, at)
    t, c, ttl, ln = struct.unpack(">HHIH", msg[at:at + 10]); at += 10
    rd = msg[at:at + ln]
    if t == 1: data = socket.inet_ntoa(rd)
    elif t in (12,): data = decode(msg, at)[0]
    elif t == 33: data = "%d %s" % (struct.unpack(">H", rd[4:6])[0], decode(msg, at + 6)[0])
    else: data = rd.hex()
    at += ln
    answers.append({"section": "answer" if i < an else "additional", "name": rn, "type": NAMES.get(t, t), "ttl": ttl, "flush": bool(c & 0x8000), "data": data})
print(json.dumps({"reply": True, "from": sender[0], "port": sender[1], "id": mid, "response": bool(flags & 0x8000), "questions": questions, "answers": answers}, indent=1))
