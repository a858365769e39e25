"""How source road types map onto the GB/T 33171 road classes.

GB/T 33171 (城市交通运行状况评价规范) grades urban roads as 快速路 ``expressway``, 主干路
``arterial``, 次干路 ``secondary`` and 支路 ``branch``.

OpenStreetMap ``highway=*`` (also used for SUMO edge types ``highway.<value>`` and for GeoJSON
``road_class`` values that are OSM highway values):

================================================  ==============
OSM ``highway``                                   road class
================================================  ==============
motorway, motorway_link, trunk, trunk_link        expressway 快速路
primary, primary_link                             arterial 主干路
secondary, secondary_link, tertiary               secondary 次干路
tertiary_link, unclassified, residential,         branch 支路
living_street
================================================  ==============

Any other ``highway`` value is not a drivable road for roadpulse (service, track, footway, path,
pedestrian, cycleway, steps, bridleway, busway, construction, proposed, raceway, …).

Where a source has no usable type (SUMO edges without a ``type`` or with an unmapped one, such as
``highway.service`` or a netgenerate grid), the class follows the speed limit:

=====================  ==============
speed limit            road class
=====================  ==============
≥ 70 km/h              expressway
≥ 55 km/h              arterial
≥ 40 km/h              secondary
< 40 km/h              branch
=====================  ==============

The thresholds sit between the CJJ 37 design speeds of adjacent classes (快速路 60–100, 主干路 40–60,
次干路 30–50, 支路 20–40 km/h) so that a typical posted limit lands in its own class.
"""

from __future__ import annotations

from .network import ROAD_CLASS_CODE, ROAD_CLASSES

#: OSM ``highway`` value → GB/T 33171 road class; the keys are exactly the drivable highway values.
OSM_HIGHWAY_CLASS: dict[str, str] = {
    "motorway": "expressway",
    "motorway_link": "expressway",
    "trunk": "expressway",
    "trunk_link": "expressway",
    "primary": "arterial",
    "primary_link": "arterial",
    "secondary": "secondary",
    "secondary_link": "secondary",
    "tertiary": "secondary",
    "tertiary_link": "branch",
    "unclassified": "branch",
    "residential": "branch",
    "living_street": "branch",
}

#: Lower speed-limit bounds (km/h) of the classes when the class follows the speed limit.
SPEED_CLASS_THRESHOLDS_KMH: tuple[tuple[float, str], ...] = (
    (70.0, "expressway"),
    (55.0, "arterial"),
    (40.0, "secondary"),
)


def road_class_from_osm_highway(highway: str) -> str | None:
    """The road class of an OSM ``highway`` value, or ``None`` when it is not a drivable road."""
    return OSM_HIGHWAY_CLASS.get(highway.strip())


def road_class_from_speed(speed_limit_kmh: float) -> str:
    """The road class implied by a speed limit (see the module docstring for the thresholds)."""
    for lower_kmh, road_class in SPEED_CLASS_THRESHOLDS_KMH:
        if speed_limit_kmh >= lower_kmh:
            return road_class
    return "branch"


def road_class_code(road_class: str) -> int:
    """The ``SegmentTable.road_class`` code of a class name; ``ValueError`` for an unknown name."""
    try:
        return ROAD_CLASS_CODE[road_class]
    except KeyError:
        raise ValueError(
            f"unknown road class {road_class!r}; expected one of {', '.join(ROAD_CLASSES)}"
        ) from None
