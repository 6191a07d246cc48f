#!/usr/bin/python3
"""The reference server for `make bench`: gst-rtsp-server 1.22 with one shared media that relays
pearl2d's H.264 stream (the same encoded bytes), so both servers fan out the same stream.
usage: gst-rtsp-relay.py PORT SOURCE_URL"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib

Gst.init(None)
port, source = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( rtspsrc location={source} protocols=tcp latency=0 ! rtph264depay ! rtph264pay name=pay0 pt=96 config-interval=-1 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/stream.sdp", factory)
server.attach(None)
print(f"gst-rtsp-server ready on port {port}", flush=True)
GLib.MainLoop().run()
