"""Estimates for segments without a measured state, from the graph and from typical profiles.

A segment has no measured state when it has no detector of its own, or when its detectors have
been silent (or unusable) for longer than ``stale_after_s``. Such a segment is filled, marked
``imputed: true``, from

1. its **graph neighbours** (``RoadNetwork.successors_csr`` / ``predecessors_csr``, without the
   segment's own reverse, whose traffic runs the other way): the confidence-weighted mean of
   their travel-time indices (TTI = free flow / speed = 1/r) — in general the power mean
   M_p = (Σ w·TTI^p / Σ w)^(1/p), p = ``tti_power`` (1: the plain mean) —, downstream
   neighbours weighing more than upstream ones, because congestion travels upstream (a queue
   spilling back from the next junction is the usual way a segment without a loop gets
   congested). Ratios, not speeds, transfer: a 30 km/h branch road next to a 60 km/h arterial
   both at r = 0.5 are equally congested. TTIs, not ratios, are averaged: one jammed neighbour
   (r = 0.1, TTI 10) beside two free ones (r = 0.8) gives r = 0.24, where a mean of ratios
   would give 0.57 — in a grid gridlock arrives through one jammed exit, and averaging travel
   times is what a driver meeting either would experience (on SUMO grids this took unlooped
   level agreement from 18–59 % to 42–72 %). p > 1 lets the most congested neighbour weigh
   more still (p = 8: r = 0.11 above); it raised unlooped agreement on the scenarios it was
   tried on but not on scenarios held out from that choice (docs/accuracy.md), so p stays 1. Where no
   neighbour is measured, the neighbours' own imputed
   values are used one hop further, at ``second_hop_weight``;
2. its own **typical profile**: the segment's learned mean ratio for this hour of day (learned
   while it had detectors; ``CongestionEngine.export_state`` keeps it across restarts), blended
   in at ``profile_weight``.

**Junction model** (``junction_model`` > 0, the default). What transfers is not a neighbour's
whole TTI, which carries its own junction's delay (its signal, its green share) onto a segment
whose junction may be another control, but its *excess* over that junction: its TTI ÷ its
``base_tti``, the TTI the travel-speed model (``travel_speed``: running at v₀ =
``free_flow_fraction_of_limit`` × limit, Webster's delay and the stop-start loss at its signal,
priority delay otherwise) gives it uncongested at its smoothed flow per lane, over the model's
zero-flow travel time with ``free_flow_delay_share`` of the delay (as free flow is learned).
The pooled excess is multiplied by the segment's own ``base_tti`` at the weighted mean flow per
lane of its neighbours (``_kernels._base_tti``, computed by ``impute_segments`` only for the unknown
segments and their measured neighbours, where it is read). What the model cannot know — a queue
spilling back, a blocked lane — is what the excess carries. At priority junctions ``base_tti``
is 1 and this is the plain TTI pool. A segment without a detector, which never learns its free
flow, takes the model's zero-flow speed (actuated signals at their light-traffic timing) as its
free flow instead of ``free_flow_fraction_of_limit`` × limit (``_kernels.model_free_flow``).
In both, the model's speed never falls below the standing-queue speed (``stopped_speed_kmh``):
on a stub a metre long ending at a signal the formula gives a fraction of a km/h.

**Dead ends** (``dead_end_free`` > 0, the default). A segment whose only continuation is its
own reverse — a cul-de-sac, or a road leaving the network's edge — takes no excess from its
neighbours: it has no exit whose queue could spill back into it, and all it has are upstream
neighbours, whose congestion is held at their own junction, before it. It runs at its own
uncongested model (pooled excess 1, × 1 / its ``base_tti``), with the neighbours' confidence. On
the West Oakland runs the upstream pool alone read the unlooped boundary roads at 2–9 km/h where
SUMO had 40–108 (docs/accuracy.md).

Nothing known → the segment stays unknown (level 0) rather than guessed smooth. Imputed
confidence is ``confidence_factor`` × the weighted confidence of the sources (profile: 0.5), so
an imputed state is always less trusted than the measurements it came from. Imputation never
overrides a measured state. The kernel is ``_kernels.impute_segments``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from . import _kernels


@dataclass(frozen=True)
class ImputationParams:
    downstream_weight: float = 1.0
    upstream_weight: float = 0.6
    second_hop_weight: float = 0.5
    profile_weight: float = 0.5
    confidence_factor: float = 0.5
    #: Exponent of the power mean of the neighbours' travel-time indices (1 = their mean).
    tti_power: float = 1.0
    #: Transfer the neighbours' excess over their own junction's modelled delay (> 0) rather than
    #: their whole travel-time index (0); see the module docstring.
    junction_model: float = 1.0
    #: A segment whose only continuation is its own reverse (a dead end, the network's edge)
    #: takes no excess from its neighbours (> 0) or pools them as any other (0).
    dead_end_free: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"imputation {f.name} = {value!r}: expected a finite number ≥ 0")
        if self.tti_power <= 0:
            raise ValueError(f"imputation tti_power = {self.tti_power}: expected > 0")
        if self.confidence_factor > 1:
            raise ValueError(f"imputation confidence_factor = {self.confidence_factor}: expected ≤ 1")

    def as_tuple(self) -> tuple[float, ...]:
        out = [0.0] * _kernels.IP_N
        out[_kernels.IP_DOWNSTREAM_WEIGHT] = self.downstream_weight
        out[_kernels.IP_UPSTREAM_WEIGHT] = self.upstream_weight
        out[_kernels.IP_SECOND_HOP_WEIGHT] = self.second_hop_weight
        out[_kernels.IP_PROFILE_WEIGHT] = self.profile_weight
        out[_kernels.IP_CONFIDENCE_FACTOR] = self.confidence_factor
        out[_kernels.IP_TTI_POWER] = self.tti_power
        out[_kernels.IP_JUNCTION_MODEL] = self.junction_model
        out[_kernels.IP_DEAD_END_FREE] = self.dead_end_free
        return tuple(float(x) for x in out)
