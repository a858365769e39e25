"""camera: traffic-camera analytics, a source like ``ingest/`` (frames in, lane measurements,
health and incidents out; nothing here knows about congestion).

One small module per piece, in the order a frame meets them: ``config`` (camera TOML files),
``sources`` (image folders, video files, streams), ``analyzer`` (the per-camera pipeline and its
stats intervals) with ``background``, ``health``, ``geometry`` (homography, zone masks), ``zones``
(occupancy, loop counts, queues) and ``tracking`` (speeds, counting lines, stopped and wrong-way
vehicles); then ``messages`` (MQTT messages, zone readings), ``annotate`` (snapshots),
``registry`` (zones as detectors), ``replay`` (``roadpulse camera-replay``), ``worker`` (the
crash-isolating process pool) and ``faults`` (synthetic faults for tests). Nothing is done at
import time.
"""
