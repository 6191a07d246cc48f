#!/usr/bin/python3
"""The reference server for `make bench`: gst-rtsp-server 1.22 with one shared media that serves a clip pre-encoded by
pearl2d (the same bitrate, GOP and audio), pushed through appsrc at its own pace and looped with timestamps that keep
going up. No rtspsrc, no decode, no encode: the reference's cost is its fan-out.
usage: gst-rtsp-clip.py PORT CLIP.h264 CLIP.aac|- FPS
CLIP.h264 is Annex-B with an access unit delimiter before each picture; CLIP.aac is ADTS (or - for no audio)."""
import sys
import threading
import time
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst, GstRtspServer, GLib, GstApp  # noqa: F401 (GstApp: appsrc's push-buffer)

Gst.init(None)
port, video_path, audio_path, fps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def access_units(data):
    """The pictures of an Annex-B stream, split at each access unit delimiter (NAL type 9), cut to whole GOPs."""
    starts, i = [], 0
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        if data[j + 3] & 0x1F == 9:
            starts.append(j - 1 if j > 0 and data[j - 1] == 0 else j)
        i = j + 3
    starts.append(len(data))
    units = [data[starts[k]:starts[k + 1]] for k in range(len(starts) - 1)]

    def idr(unit):
        k = 0
        while True:
            k = unit.find(b"\x00\x00\x01", k)
            if k < 0:
                return False
            if unit[k + 3] & 0x1F == 5:
                return True
            k += 3
    keys = [n for n, u in enumerate(units) if idr(u)]
    if len(keys) < 2:
        sys.exit("the clip needs two key frames")
    return units[keys[0]:keys[-1]]   # from the first key frame to just before the last: loops seamlessly


def adts_frames(data):
    frames, i = [], 0
    while i + 7 <= len(data):
        length = ((data[i + 3] & 3) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        if data[i] != 0xFF or length < 7:
            break
        frames.append(data[i:i + length])
        i += length
    return frames


video = access_units(open(video_path, "rb").read())
audio = adts_frames(open(audio_path, "rb").read()) if audio_path != "-" else []
rate = 48000
if audio:
    rate = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000][(audio[0][2] >> 2) & 0xF]


def feed(vsrc, asrc):
    """Pushes pictures and AAC frames at their own pace, forever, each loop's timestamps after the last one's."""
    vdur, adur = Gst.SECOND // fps, 1024 * Gst.SECOND // rate
    start, vi, ai = time.monotonic(), 0, 0
    while True:
        vt, at = vi * vdur, (ai * adur if audio else 1 << 62)
        delay = start + min(vt, at) / Gst.SECOND - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if vt <= at:
            buf = Gst.Buffer.new_wrapped(video[vi % len(video)])
            buf.pts, buf.duration = vt, vdur
            if vsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return
            vi += 1
        else:
            buf = Gst.Buffer.new_wrapped(audio[ai % len(audio)])
            buf.pts, buf.duration = at, adur
            if asrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return
            ai += 1


launch = ("( appsrc name=v is-live=true format=time caps=video/x-h264,stream-format=byte-stream,alignment=au"
          " ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1")
if audio:
    launch += (f" appsrc name=a is-live=true format=time caps=audio/mpeg,mpegversion=4,stream-format=adts,rate={rate},channels=2"
               " ! aacparse ! rtpmp4gpay name=pay1 pt=97")
launch += " )"


def configure(factory, media):
    bin_ = media.get_element()
    threading.Thread(target=feed, args=(bin_.get_by_name("v"), bin_.get_by_name("a")), daemon=True).start()


server = GstRtspServer.RTSPServer()
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared(True)
factory.connect("media-configure", configure)
server.get_mount_points().add_factory("/stream.sdp", factory)
server.attach(None)
print(f"gst-rtsp-server ready on port {port}: {len(video)} pictures, {len(audio)} AAC frames, looped", flush=True)
GLib.MainLoop().run()
