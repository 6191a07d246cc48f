#!/usr/bin/python3
"""A GUPnP control point, as UPnP/DLNA players are: finds a MediaServer by SSDP on one interface, reads its
description, and walks its ContentDirectory with Browse (BrowseMetadata on each object, BrowseDirectChildren in pages
of PAGE). Prints one JSON document: the device, every object with its DIDL-Lite fields, and the SOAP answers to the
other actions. Used by the integration tests against pearl2d and against minidlna.

usage: upnp-browse.py IFACE LOCATION-SUBSTRING [PAGE] [SORT]
"""
import json, sys, xml.etree.ElementTree as ET
import gi
gi.require_version('GUPnP', '1.6')
gi.require_version('GSSDP', '1.6')
from gi.repository import GUPnP, GLib, GObject
import warnings
warnings.simplefilter("ignore", DeprecationWarning)

iface, match = sys.argv[1], sys.argv[2]
page = int(sys.argv[3]) if len(sys.argv) > 3 else 2
sort = sys.argv[4] if len(sys.argv) > 4 else ""
NS = {"d": "urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/", "dc": "http://purl.org/dc/elements/1.1/",
      "upnp": "urn:schemas-upnp-org:metadata-1-0/upnp/"}
out = {"found": False}

def call(service, name, args, results):
    action = GUPnP.ServiceProxyAction.new_from_list(name, [a for a, _ in args], [v for _, v in args])
    service.call_action(action, None)
    ok, values = action.get_result_list([r for r, _ in results], [t for _, t in results])
    return dict(zip([r for r, _ in results], values))

def parse(didl):
    objs = []
    for el in ET.fromstring(didl):
        tag = el.tag.split('}')[1]
        o = {"kind": tag, "id": el.get("id"), "parentID": el.get("parentID"), "restricted": el.get("restricted"),
             "childCount": el.get("childCount"), "fields": {}}
        for child in el:
            name = child.tag.split('}')[1]
            prefix = {NS["dc"]: "dc:", NS["upnp"]: "upnp:", NS["d"]: ""}.get(child.tag.split('}')[0][1:], "?:")
            if name == "res":
                o.setdefault("res", []).append({"url": child.text, **dict(child.attrib)})
            else:
                o["fields"][prefix + name] = child.text
        objs.append(o)
    return objs

def found(cp, proxy):
    if match not in proxy.get_location() or out["found"]:
        return
    out["found"] = True
    out["device"] = {"name": proxy.get_friendly_name(), "location": proxy.get_location(), "udn": proxy.get_udn(),
                     "model": proxy.get_model_name(), "serial": proxy.get_serial_number()}
    cd = proxy.get_service("urn:schemas-upnp-org:service:ContentDirectory")
    cm = proxy.get_service("urn:schemas-upnp-org:service:ConnectionManager")
    S, U = GObject.TYPE_STRING, GObject.TYPE_UINT
    out["sort_caps"] = call(cd, "GetSortCapabilities", [], [("SortCaps", S)])["SortCaps"]
    out["search_caps"] = call(cd, "GetSearchCapabilities", [], [("SearchCaps", S)])["SearchCaps"]
    out["update_id"] = call(cd, "GetSystemUpdateID", [], [("Id", U)])["Id"]
    out["protocol_info"] = call(cm, "GetProtocolInfo", [], [("Source", S), ("Sink", S)])["Source"]
    objects, queue = {}, ["0"]
    while queue:
        oid = queue.pop(0)
        meta = call(cd, "Browse", [("ObjectID", oid), ("BrowseFlag", "BrowseMetadata"), ("Filter", "*"), ("StartingIndex", 0),
                                   ("RequestedCount", 0), ("SortCriteria", "")], [("Result", S), ("NumberReturned", U), ("TotalMatches", U)])
        this = parse(meta["Result"])[0]
        objects[oid] = this
        if this["kind"] != "container":
            continue
        start, children = 0, []
        while True:
            r = call(cd, "Browse", [("ObjectID", oid), ("BrowseFlag", "BrowseDirectChildren"), ("Filter", "*"), ("StartingIndex", start),
                                    ("RequestedCount", page), ("SortCriteria", sort)], [("Result", S), ("NumberReturned", U), ("TotalMatches", U)])
            got = parse(r["Result"])
            children += [c["id"] for c in got]
            start += r["NumberReturned"]
            if r["NumberReturned"] == 0 or start >= r["TotalMatches"]:
                break
        this["children"] = children
        queue += children
    out["objects"] = objects
    loop.quit()

ctx = GUPnP.Context.new(iface, 0)
cp = GUPnP.ControlPoint.new(ctx, "urn:schemas-upnp-org:device:MediaServer:1")
cp.connect("device-proxy-available", found)
cp.set_active(True)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(int(sys.argv[5]) if len(sys.argv) > 5 else 20, loop.quit)
loop.run()
print(json.dumps(out, indent=1))
