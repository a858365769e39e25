"""Sources of detector readings: MQTT messages and JSONL files in, `ReadingBatch` rows out.

Sources know nothing about congestion: they validate, deduplicate and count readings, and turn
every unusable one into a `Rejection` with a reason a person can act on.
"""

from ingest.binary_batch import encode_binary_batch
from ingest.jsonl import iter_jsonl_readings
from ingest.limits import IngestLimits
from ingest.mqtt_endpoint import MqttEndpoint
from ingest.mqtt_source import MqttReadingSource
from ingest.parse import ParseResult, ReadingParser
from ingest.rejections import Rejection

__all__ = [
    "IngestLimits",
    "MqttEndpoint",
    "MqttReadingSource",
    "ParseResult",
    "ReadingParser",
    "Rejection",
    "encode_binary_batch",
    "iter_jsonl_readings",
]
