"""IP cameras for tests and benchmarks: video files served as looped H.264 over RTSP on loopback.

Run with the system Python (it needs GStreamer's introspection bindings, `python3-gi` and
`gir1.2-gst-rtsp-server-1.0`, which a virtualenv does not see):

    /usr/bin/python3 tooling/rtsp_camera.py --port 8554 --size 1920x1080 --fps 25 door-1=clip.avi

Each `NAME=FILE` becomes the mount `rtsp://127.0.0.1:PORT/NAME`. At start every file is scaled,
rate-converted and encoded once (x264, a key frame every second, as a camera would send) and
kept in memory; serving then costs no encoding, so the box measured is not also busy playing
the cameras. Each client gets the stream from its first frame, paced on the wall clock, looped.

Every frame carries its number within the loop in a strip of coloured blocks at the top left.
The blocks differ in colour only, not in brightness, so the motion gate (which looks at a grey
picture) does not see them change. `read_stamp` reads the number back from a BGR frame; with
the wall time at which the client's stream started (printed as a JSON line `{"play": NAME,
"t0": ...}`) it gives the wall time each frame left the camera.

Commands on stdin, one a line: `stall NAME` (stop sending, connection kept), `resume NAME`,
`resize NAME` (switch to the `--alt-size` encoding, as a camera whose resolution is changed).
The helper prints `{"ready": PORT}` once it serves, and exits on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

SYSTEM_PYTHON = "/usr/bin/python3"

BITS = 16              # the frame number's width: loops of up to 65 535 frames
BLOCKS_PER_ROW = 16
ONE_BGR = (54, 64, 255)     # a set bit: reddish ...
ZERO_BGR = (255, 155, 0)    # ... a clear bit: bluish, of the same grey level (Y = 120)
Y_LEVEL, U_ONE, V_ONE, U_ZERO, V_ZERO = 120, 95, 209, 199, 31  # the same colours in BT.601 YUV


def block_size(width: int) -> int:
    """Side of one stamp block in pixels: even (chroma is subsampled 2x2), larger on larger frames."""
    return max(8, (width // 120) // 2 * 2)


def read_stamp(image: Any) -> int | None:
    """The frame number stamped in a BGR frame (numpy array), or None when there is no stamp."""
    side = block_size(image.shape[1])
    total = 0
    for bit in range(BITS):
        row, col = divmod(bit, BLOCKS_PER_ROW)
        y, x = row * side + side // 2, col * side + side // 2
        b, _, r = (int(v) for v in image[y - side // 4:y + side // 4, x - side // 4:x + side // 4].reshape(-1, 3).mean(0))
        if abs(r - b) < 60:
            return None  # not a stamp block: neither clearly red nor clearly blue
        total |= (r > b) << bit
    return total


def _stamp_i420(data: bytearray, width: int, height: int, number: int) -> None:
    """Write `number` into an I420 frame: luma set to one level, chroma per bit."""
    side = block_size(width)
    u_plane = width * height
    v_plane = u_plane + (width // 2) * (height // 2)
    for bit in range(BITS):
        row, col = divmod(bit, BLOCKS_PER_ROW)
        one = (number >> bit) & 1
        x0, y0 = col * side, row * side
        for y in range(y0, y0 + side):
            data[y * width + x0:y * width + x0 + side] = bytes([Y_LEVEL]) * side
        for y in range(y0 // 2, (y0 + side) // 2):
            start = y * (width // 2) + x0 // 2
            data[u_plane + start:u_plane + start + side // 2] = bytes([U_ONE if one else U_ZERO]) * (side // 2)
            data[v_plane + start:v_plane + start + side // 2] = bytes([V_ONE if one else V_ZERO]) * (side // 2)


def encode(Gst: Any, path: str, width: int, height: int, fps: int) -> list[bytes]:
    """The file as H.264 access units at `width`x`height` and `fps`, each frame stamped with its number."""
    raw_caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
    decode = Gst.parse_launch(
        f'filesrc location="{path}" ! decodebin ! videoconvert ! videoscale ! videorate ! '
        f"{raw_caps},pixel-aspect-ratio=1/1 ! appsink name=raw sync=false max-buffers=4")
    kbps = max(512, width * height * 2 // 1000)  # about 4 Mbit/s at 1080p, as cameras send
    enc = Gst.parse_launch(
        f"appsrc name=src caps={raw_caps} format=time block=true max-bytes={width * height * 6} ! "
        f"x264enc speed-preset=ultrafast tune=zerolatency key-int-max={fps} bitrate={kbps} threads=1 ! "
        "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! "
        "appsink name=out sync=false")
    src, raw, out = enc.get_by_name("src"), decode.get_by_name("raw"), enc.get_by_name("out")
    units: list[bytes] = []
    out.set_property("emit-signals", True)
    out.connect("new-sample", lambda sink: _keep(Gst, sink, units))
    enc.set_state(Gst.State.PLAYING)
    decode.set_state(Gst.State.PLAYING)
    number = 0
    while True:
        sample = raw.emit("pull-sample")
        if sample is None:
            break
        ok, info = sample.get_buffer().map(Gst.MapFlags.READ)
        data = bytearray(info.data)
        sample.get_buffer().unmap(info)
        _stamp_i420(data, width, height, number)
        buffer = Gst.Buffer.new_wrapped(bytes(data))
        buffer.pts = buffer.dts = number * Gst.SECOND // fps
        buffer.duration = Gst.SECOND // fps
        src.emit("push-buffer", buffer)
        number += 1
    src.emit("end-of-stream")
    enc.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    decode.set_state(Gst.State.NULL)
    enc.set_state(Gst.State.NULL)
    if not units:
        raise RuntimeError(f"{path}: nothing could be decoded and encoded")
    return units


def _keep(Gst: Any, sink: Any, units: list[bytes]) -> Any:
    buffer = sink.emit("pull-sample").get_buffer()
    units.append(buffer.extract_dup(0, buffer.get_size()))
    return Gst.FlowReturn.OK


class Mount:
    """One camera: its encodings and what the operator made of it (stalled, resized)."""

    def __init__(self, name: str, main: list[bytes], alt: list[bytes] | None) -> None:
        self.name, self.main, self.alt = name, main, alt
        self.resized = False
        self.stalled = threading.Event()

    def units(self) -> list[bytes]:
        return self.alt if self.resized and self.alt else self.main


def _pace(Gst: Any, mount: Mount, appsrc: Any, fps: int, stop: threading.Event) -> None:
    """Push the mount's frames at `fps` on the wall clock, looping, until the client goes away."""
    t0 = time.time()
    print(json.dumps({"play": mount.name, "t0": t0, "frames": len(mount.main), "fps": fps}), flush=True)
    n = 0
    units = mount.units()
    while not stop.is_set():
        if mount.units() is not units:
            units, n = mount.units(), 0  # a new size starts at its first (key) frame
        delay = t0 + n / fps - time.time()
        if delay > 0:
            stop.wait(delay)
        while mount.stalled.is_set() and not stop.is_set():
            stop.wait(0.05)
            t0 = time.time() - n / fps
        buffer = Gst.Buffer.new_wrapped(units[n % len(units)])
        if appsrc.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
            return
        n += 1


def serve(args: argparse.Namespace) -> None:
    """Encode every file, serve the mounts until SIGTERM or the end of stdin."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    width, height = (int(v) for v in args.size.split("x"))
    alt_size = tuple(int(v) for v in args.alt_size.split("x")) if args.alt_size else None
    mounts: dict[str, Mount] = {}
    encoded: dict[tuple[str, int, int], list[bytes]] = {}  # cameras serving one file share its encoding

    def encoding(path: str, w: int, h: int) -> list[bytes]:
        if (path, w, h) not in encoded:
            encoded[path, w, h] = encode(Gst, path, w, h, args.fps)
        return encoded[path, w, h]

    for spec in args.mounts:
        name, path = spec.split("=", 1)
        alt = encoding(path, alt_size[0], alt_size[1]) if alt_size else None
        mounts[name] = Mount(name, encoding(path, width, height), alt)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    for mount in mounts.values():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch("( appsrc name=src is-live=true do-timestamp=true format=time "
                           "caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse config-interval=-1 ! "
                           "rtph264pay name=pay0 pt=96 config-interval=-1 )")
        factory.connect("media-configure", lambda _f, media, m=mount: _configure(Gst, media, m, args.fps))
        server.get_mount_points().add_factory(f"/{mount.name}", factory)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    threading.Thread(target=_commands, args=(mounts, loop), daemon=True).start()
    print(json.dumps({"ready": args.port, "mounts": sorted(mounts)}), flush=True)
    loop.run()


def _configure(Gst: Any, media: Any, mount: Mount, fps: int) -> None:
    stop = threading.Event()
    appsrc = media.get_element().get_by_name_recurse_up("src")
    media.connect("unprepared", lambda *_: stop.set())
    threading.Thread(target=_pace, args=(Gst, mount, appsrc, fps, stop), daemon=True).start()


def _commands(mounts: dict[str, Mount], loop: Any) -> None:
    """Operator commands from stdin; the end of stdin ends the helper (its parent went away)."""
    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[1] not in mounts:
            print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
            continue
        mount = mounts[words[1]]
        if words[0] == "stall":
            mount.stalled.set()
        elif words[0] == "resume":
            mount.stalled.clear()
        elif words[0] == "resize":
            mount.resized = not mount.resized
        print(json.dumps({"done": line.strip()}), flush=True)
    loop.quit()


def gstreamer_missing(python: str = SYSTEM_PYTHON) -> str | None:
    """Why the RTSP camera cannot run here (None when it can): the system Python's GStreamer."""
    if not os.access(python, os.X_OK):
        return f"{python} not found"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst; Gst.init(None); "
             "missing = [e for e in ('x264enc', 'h264parse', 'rtph264pay', 'appsrc', 'decodebin') "
             "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"GStreamer probe failed: {exc}"
    if done.returncode != 0:
        return "GStreamer's RTSP server is not installed (python3-gi, gir1.2-gst-rtsp-server-1.0)"
    if done.stdout.strip():
        return f"GStreamer elements missing: {done.stdout.strip()} (gstreamer1.0-plugins-ugly/-good/-base)"
    return None


class RtspCameras:
    """The helper as a subprocess (from any Python): start, kill, start again on the same port, command.

    `plays` collects the `{"play": ...}` lines: when each client's stream started, by mount.
    """

    def __init__(self, files: dict[str, Path], *, size: str = "1920x1080", fps: int = 25,
                 alt_size: str | None = None, port: int | None = None, log: Path | None = None) -> None:
        # Imported here: the module also runs as a script under the system Python, without footfall.
        from footfall.tooling.processes import free_port

        self.files, self.size, self.fps, self.alt_size = files, size, fps, alt_size
        self.port = port or free_port()
        self.log = log
        self.plays: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def url(self, name: str) -> str:
        """The RTSP address of one camera."""
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 300.0) -> RtspCameras:
        """Start serving (encoding every file first) and wait until the server listens."""
        command = [SYSTEM_PYTHON, str(Path(__file__).resolve()), "--port", str(self.port), "--size", self.size,
                   "--fps", str(self.fps)] + (["--alt-size", self.alt_size] if self.alt_size else [])
        command += [f"{name}={path}" for name, path in self.files.items()]
        stderr: IO[str] | int = open(self.log, "a") if self.log else subprocess.DEVNULL
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                      text=True, bufsize=1)
        with self._cond:
            self._lines.clear()
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()
        self._wait(lambda line: "ready" in line, timeout, "the RTSP camera to listen")
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            try:
                line = json.loads(text)
            except ValueError:
                continue
            with self._cond:
                self._lines.append(line)
                if "play" in line:
                    self.plays.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, match: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((line for line in self._lines if match(line)), None)
                if found is not None:
                    return found
                if self._proc is None or self._proc.poll() is not None:
                    raise RuntimeError(f"the RTSP camera exited before {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"waited {timeout:.0f} s for {what}")
                self._cond.wait(min(left, 0.5))

    def command(self, verb: str, name: str, timeout: float = 10.0) -> None:
        """`stall`, `resume` or `resize` one camera; returns once the helper applied it."""
        assert self._proc is not None and self._proc.stdin is not None
        with self._cond:
            self._lines = [line for line in self._lines if "done" not in line]
        self._proc.stdin.write(f"{verb} {name}\n")
        self._proc.stdin.flush()
        self._wait(lambda line: line.get("done") == f"{verb} {name}", timeout, f"{verb} {name}")

    def kill(self) -> None:
        """End the server at once (SIGKILL): every stream is cut, as when a camera loses power."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL if it lingers)."""
        from footfall.tooling.processes import end_process

        if self._proc is None:
            return
        end_process(self._proc, 10)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._proc = None

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def stream_start(self, name: str) -> float | None:
        """Wall time (epoch seconds) the newest stream of camera `name` started, if any did."""
        with self._cond:
            times = [p["t0"] for p in self.plays if p["play"] == name]
        return times[-1] if times else None


def main(argv: list[str] | None = None) -> None:
    """Command line: serve `NAME=FILE` mounts on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT of the stream")
    parser.add_argument("--alt-size", help="WIDTHxHEIGHT the `resize` command switches to")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("mounts", nargs="+", metavar="NAME=FILE")
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
