"""Broker-wide state of the embedded broker: sessions, subscriptions, retained messages, routing.

Everything here runs on the broker's event-loop thread; nothing is locked.  The per-connection
wire protocol lives in :mod:`roadpulse.brokers._connection`, which calls into :class:`BrokerState`
and is called back through the small :class:`Link` interface.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from ._codec import encode_string
from ._topics import SubscriptionTree, topic_matches

log = logging.getLogger("roadpulse.brokers.embedded")


@dataclass(slots=True)
class Message:
    """One application message as the broker stores and routes it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    # Raw MQTT 5 properties forwarded to v5 subscribers (user properties, content type, ...).
    props: bytes = b""
    # Client id of the publisher, for the MQTT 5 "No Local" subscription option.
    publisher: str | None = None
    # The topic with its length prefix, encoded once however many subscribers receive it.
    topic_bytes: bytes = b""

    def __post_init__(self) -> None:
        if not self.topic_bytes:
            self.topic_bytes = encode_string(self.topic)


@dataclass(slots=True)
class Subscription:
    """One client's subscription to one topic filter, with its (MQTT 5) options."""

    topic_filter: str  # as the client sent it, including any "$share/{group}/" prefix
    group: str | None  # shared-subscription group, None for an ordinary subscription
    match_filter: str  # the filter proper, without the "$share/{group}/" prefix
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    sub_id: int | None = None


@dataclass(slots=True)
class Outgoing:
    """A QoS 1/2 message on its way to one session (queued or in flight)."""

    message: Message
    qos: int
    retain: bool
    sub_ids: tuple[int, ...]
    released: bool = False  # QoS 2: PUBREC received and PUBREL sent, waiting for PUBCOMP


class Link(Protocol):
    """What the broker state needs from a live client connection."""

    receive_maximum: int

    def send_publish(self, out: Outgoing, packet_id: int, dup: bool) -> bool:
        """Send a PUBLISH; False if the client cannot take it (too large, or a slow consumer)."""
        ...

    def send_pubrel(self, packet_id: int) -> None:
        """Send a PUBREL (resuming a QoS 2 hand-over after a reconnect)."""
        ...

    def close_taken_over(self) -> None:
        """Close this connection because a new one connected with the same client id."""
        ...


@dataclass(slots=True, eq=False)
class Session:
    """The state MQTT keeps per client id: subscriptions and unacknowledged messages.

    ``expiry_s`` is how long the session outlives its connection: 0 for a clean session, None
    for "until the broker stops" (MQTT 3.1.1 clean_session=0, or MQTT 5 interval 0xFFFFFFFF).
    """

    client_id: str
    expiry_s: float | None = 0.0
    link: Link | None = None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    inflight: dict[int, Outgoing] = field(default_factory=dict)  # insertion order = send order
    pending: deque[Outgoing] = field(default_factory=deque)
    qos2_received: set[int] = field(default_factory=set)  # inbound QoS 2 ids awaiting PUBREL
    expires_at: float | None = None
    next_packet_id: int = 1

    def allocate_packet_id(self) -> int:
        """The next free packet id (1..65535); callers keep fewer than 65535 in flight."""
        while True:
            packet_id = self.next_packet_id
            self.next_packet_id = packet_id % 0xFFFF + 1
            if packet_id not in self.inflight:
                return packet_id


class BrokerState:
    """Sessions, the subscription tree and retained messages; routes every PUBLISH."""

    def __init__(self, *, max_queued_messages: int) -> None:
        self.max_queued_messages = max_queued_messages
        self.sessions: dict[str, Session] = {}
        self.tree: SubscriptionTree[Subscription] = SubscriptionTree()
        self.retained: dict[str, Message] = {}
        self.dropped_messages = 0

    # -- sessions ---------------------------------------------------------------------------

    def attach(
        self, link: Link, client_id: str, *, clean: bool, expiry_s: float | None
    ) -> tuple[Session, bool]:
        """Bind ``link`` to ``client_id``'s session; returns ``(session, session_present)``."""
        session = self.sessions.get(client_id)
        if session is not None and session.link is not None:
            old, session.link = session.link, None
            old.close_taken_over()
        if session is not None and (clean or self._expired(session)):
            self.discard(session)
            session = None
        present = session is not None
        if session is None:
            session = Session(client_id)
            self.sessions[client_id] = session
        session.link = link
        session.expiry_s = expiry_s
        session.expires_at = None
        return session, present

    def detach(self, session: Session) -> None:
        """The session's connection is gone: end the session or start its expiry clock."""
        session.link = None
        if session.expiry_s == 0:
            self.discard(session)
        elif session.expiry_s is not None:
            session.expires_at = time.monotonic() + session.expiry_s

    def discard(self, session: Session) -> None:
        """Forget a session and all its subscriptions."""
        for sub in session.subscriptions.values():
            self.tree.remove(sub.match_filter, sub.group, session.client_id)
        session.subscriptions.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    @staticmethod
    def _expired(session: Session) -> bool:
        return session.expires_at is not None and time.monotonic() >= session.expires_at

    def resume(self, session: Session) -> None:
        """Resend what a reconnecting client had not acknowledged, then drain its queue."""
        link = session.link
        if link is None:
            return
        for packet_id, out in list(session.inflight.items()):
            if out.released:
                link.send_pubrel(packet_id)
            elif not link.send_publish(out, packet_id, dup=True):
                del session.inflight[packet_id]
        self.drain(session)

    # -- subscriptions ----------------------------------------------------------------------

    def subscribe(self, session: Session, sub: Subscription) -> bool:
        """Add or replace a subscription; returns whether it is new."""
        session.subscriptions[sub.topic_filter] = sub
        return self.tree.add(sub.match_filter, sub.group, session.client_id, sub)

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        """Remove a subscription; returns whether it existed."""
        sub = session.subscriptions.pop(topic_filter, None)
        if sub is None:
            return False
        self.tree.remove(sub.match_filter, sub.group, session.client_id)
        return True

    def send_retained(self, session: Session, sub: Subscription) -> None:
        """Deliver the retained messages matching a new subscription (retain flag set)."""
        sub_ids = (sub.sub_id,) if sub.sub_id else ()
        for message in list(self.retained.values()):
            if topic_matches(sub.match_filter, message.topic):
                self.deliver(session, message, min(message.qos, sub.qos), True, sub_ids)

    # -- routing ----------------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        """Store/clear a retained message and deliver ``message`` to every matching subscriber."""
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message
            else:
                # An empty retained payload clears the topic but still reaches subscribers.
                self.retained.pop(message.topic, None)
        # A client whose filters overlap gets one copy at the highest matching QoS (spec
        # 3.3.5), carrying every matching subscription identifier (MQTT 5).
        targets: dict[str, tuple[int, bool, list[int]]] = {}
        shared_picks: list[tuple[str, Subscription]] = []
        sessions = self.sessions
        for subscribers, shared in self.tree.match(message.topic):
            for client_id, sub in subscribers.items():
                if sub.no_local and client_id == message.publisher:
                    continue
                retain = message.retain and sub.retain_as_published
                prev = targets.get(client_id)
                if prev is None:
                    targets[client_id] = (sub.qos, retain, [sub.sub_id] if sub.sub_id else [])
                else:
                    if sub.sub_id:
                        prev[2].append(sub.sub_id)
                    targets[client_id] = (max(prev[0], sub.qos), prev[1] or retain, prev[2])
            for group in shared.values():
                # Round robin over the group, preferring members that are connected now.
                members = list(group.members.items())
                n = len(members)
                chosen = members[group.turn % n]
                for step in range(n):
                    candidate = members[(group.turn + step) % n]
                    member_session = sessions.get(candidate[0])
                    if member_session is not None and member_session.link is not None:
                        chosen = candidate
                        group.turn = (group.turn + step + 1) % n
                        break
                else:
                    group.turn = (group.turn + 1) % n
                shared_picks.append(chosen)
        for client_id, (qos, retain, sub_ids) in targets.items():
            session = sessions.get(client_id)
            if session is not None:
                self.deliver(session, message, min(qos, message.qos), retain, tuple(sub_ids))
        for client_id, sub in shared_picks:
            session = sessions.get(client_id)
            if session is not None:
                retain = message.retain and sub.retain_as_published
                ids = (sub.sub_id,) if sub.sub_id else ()
                self.deliver(session, message, min(sub.qos, message.qos), retain, ids)

    def deliver(
        self, session: Session, message: Message, qos: int, retain: bool, sub_ids: tuple[int, ...]
    ) -> None:
        """Send (or queue) one message to one session at the given QoS."""
        link = session.link
        out = Outgoing(message, qos, retain, sub_ids)
        if qos == 0:
            # QoS 0 is fire and forget: not queued for offline clients (as mosquitto's default).
            if link is not None and not link.send_publish(out, 0, dup=False):
                self.dropped_messages += 1
            return
        if link is None and self._expired(session):
            self.discard(session)
            return
        if link is not None and not session.pending and len(session.inflight) < link.receive_maximum:
            packet_id = session.allocate_packet_id()
            if link.send_publish(out, packet_id, dup=False):
                session.inflight[packet_id] = out
            else:
                self.dropped_messages += 1
        elif len(session.pending) < self.max_queued_messages:
            session.pending.append(out)
        else:
            self.dropped_messages += 1

    def drain(self, session: Session) -> None:
        """Move queued messages into flight while the client's receive window allows."""
        link = session.link
        if link is None:
            return
        while session.pending and len(session.inflight) < link.receive_maximum:
            out = session.pending.popleft()
            packet_id = session.allocate_packet_id()
            if link.send_publish(out, packet_id, dup=False):
                session.inflight[packet_id] = out
            else:
                self.dropped_messages += 1

    def acknowledged(self, session: Session, packet_id: int) -> None:
        """A PUBACK or PUBCOMP completed one outgoing message."""
        if session.inflight.pop(packet_id, None) is not None and session.pending:
            self.drain(session)

    def log_drops(self) -> None:
        """Report messages dropped for slow or offline clients (called at shutdown)."""
        if self.dropped_messages:
            log.warning(
                "embedded broker dropped %d messages (queue full or client too slow)", self.dropped_messages
            )
