"""roadgraph: road networks, detector registries and snapping for roadpulse.

Flat, osmnx-style API: ``load_network`` / ``graph_from_osm`` / ``graph_from_sumo`` /
``graph_from_geojson`` return a ``RoadNetwork``; ``load_detectors`` / ``detectors_from_csv`` /
``detectors_from_sumo`` / ``place_detectors`` return a ``DetectorRegistry``. Every unusable input
raises ``NetworkFileError`` naming the file, line or element, and what was expected. Nothing is
done at import time.
"""

from ._build import network_problems, validate_network
from .classes import OSM_HIGHWAY_CLASS, road_class_from_osm_highway, road_class_from_speed
from .detector_csv import detectors_from_csv
from .detector_load import load_detectors
from .detector_sumo import detectors_from_sumo
from .detectors import DETECTOR_KINDS, DetectorRegistry
from .errors import NetworkFileError
from .geojson import graph_from_geojson
from .load import load_network
from .network import (
    DEFAULT_LANES,
    DEFAULT_SPEED_LIMIT_KMH,
    ROAD_CLASS_CODE,
    ROAD_CLASSES,
    RoadNetwork,
    SegmentTable,
)
from .osm import graph_from_osm
from .placement import place_detectors
from .projection import LocalProjection, Projection, TransverseMercator, geodesic_distance_m, haversine_m
from .snapping import SegmentIndex, SnapResult, snap_lonlat
from .sumo import graph_from_sumo
from .synthetic import synthetic_grid

__all__ = [
    "DEFAULT_LANES",
    "DEFAULT_SPEED_LIMIT_KMH",
    "DETECTOR_KINDS",
    "OSM_HIGHWAY_CLASS",
    "ROAD_CLASSES",
    "ROAD_CLASS_CODE",
    "DetectorRegistry",
    "LocalProjection",
    "NetworkFileError",
    "Projection",
    "RoadNetwork",
    "SegmentIndex",
    "SegmentTable",
    "SnapResult",
    "TransverseMercator",
    "detectors_from_csv",
    "detectors_from_sumo",
    "geodesic_distance_m",
    "graph_from_geojson",
    "graph_from_osm",
    "graph_from_sumo",
    "haversine_m",
    "load_detectors",
    "load_network",
    "network_problems",
    "place_detectors",
    "road_class_from_osm_highway",
    "road_class_from_speed",
    "snap_lonlat",
    "synthetic_grid",
    "validate_network",
]
