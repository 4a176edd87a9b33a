"""footfall: in-store edge foot-traffic recognition."""

import os

# onnxruntime otherwise writes a device id and a telemetry queue under ~/.cache/Microsoft and may
# look up Microsoft's telemetry host. It reads this variable when it is first imported, so it is
# set here, before any footfall module can import it. Nothing about a store leaves the box.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
