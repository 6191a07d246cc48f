#!/usr/bin/python3
"""python-zeroconf as an mDNS/DNS-SD client: browses the given service types on one interface address for a few
seconds, resolves every instance found, and prints them as JSON (name, addresses, port, server, TXT).

usage: zeroconf-browse.py INTERFACE-ADDRESS SECONDS TYPE [TYPE ...]   (TYPE like _rtsp._tcp.local.)
"""
import json, sys, time
from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

class Found(ServiceListener):
    def __init__(self):
        self.names = set()
    def add_service(self, zc, type_, name):
        self.names.add((type_, name))
    def update_service(self, zc, type_, name):
        self.names.add((type_, name))
    def remove_service(self, zc, type_, name):
        pass

zc = Zeroconf(interfaces=[sys.argv[1]], ip_version=IPVersion.V4Only)
found = Found()
ServiceBrowser(zc, sys.argv[3:], found)
time.sleep(float(sys.argv[2]))
out = []
for type_, name in sorted(found.names):
    info = zc.get_service_info(type_, name, timeout=3000)
    if info is None:
        out.append({"name": name, "resolved": False})
        continue
    out.append({"name": name, "resolved": True, "addresses": info.parsed_addresses(), "port": info.port, "server": info.server,
                "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}})
zc.close()
print(json.dumps(out, indent=1))
