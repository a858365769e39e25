"""Topic names, topic filters and the subscription tree of the embedded broker.

Matching rules (MQTT 3.1.1 section 4.7, unchanged in MQTT 5):

* ``+`` matches exactly one level, ``#`` (last level only) matches the parent and any number of
  levels below it, so ``a/#`` matches ``a``, ``a/b`` and ``a/b/c``;
* topics starting with ``$`` (``$SYS/...``) are not matched by a filter whose first level is a
  wildcard;
* ``$share/{group}/{filter}`` (MQTT 5 shared subscription) delivers each message to one member
  of the group.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

SHARE_PREFIX = "$share/"


def valid_topic_name(topic: str) -> bool:
    """Whether ``topic`` may be published to: non-empty and free of wildcards."""
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """Whether ``topic_filter`` is well formed: wildcards fill whole levels, ``#`` only last."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """Split ``$share/group/filter`` into ``(group, filter)``; ``(None, topic_filter)`` otherwise.

    Raises ``ValueError`` for a malformed shared subscription (empty or wildcard group name,
    missing filter).
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not sep or not group or not rest or "+" in group or "#" in group:
        raise ValueError(f"malformed shared subscription {topic_filter!r}")
    return group, rest


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a (non-shared, valid) ``topic_filter`` matches the topic name ``topic``."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)


@dataclass(slots=True)
class SharedGroup(Generic[T]):
    """The members of one ``$share/{group}/{filter}`` subscription, chosen from in turn."""

    members: dict[str, T] = field(default_factory=dict)
    turn: int = 0


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    # client id -> subscription value; a client holds at most one subscription per filter.
    subscribers: dict[str, T] = field(default_factory=dict)
    shared: dict[str, SharedGroup[T]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.children or self.subscribers or self.shared)


class SubscriptionTree(Generic[T]):
    """A trie of topic filters, one level per node, so matching a topic costs O(levels)
    rather than O(number of subscriptions)."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def add(self, topic_filter: str, group: str | None, client_id: str, value: T) -> bool:
        """Add or replace ``client_id``'s subscription; returns whether it is new."""
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.setdefault(level, _Node())
        if group is None:
            members = node.subscribers
        else:
            members = node.shared.setdefault(group, SharedGroup()).members
        is_new = client_id not in members
        members[client_id] = value
        return is_new

    def remove(self, topic_filter: str, group: str | None, client_id: str) -> bool:
        """Remove ``client_id``'s subscription; returns whether there was one."""
        path = [self._root]
        for level in topic_filter.split("/"):
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        node = path[-1]
        if group is None:
            found = node.subscribers.pop(client_id, None) is not None
        else:
            shared = node.shared.get(group)
            found = shared is not None and shared.members.pop(client_id, None) is not None
            if shared is not None and not shared.members:
                del node.shared[group]
        # Prune now-empty nodes so a churn of unique filters does not leak memory.
        levels = topic_filter.split("/")
        for depth in range(len(levels), 0, -1):
            if not path[depth].empty():
                break
            del path[depth - 1].children[levels[depth - 1]]
        return found

    def match(self, topic: str) -> Iterator[tuple[dict[str, T], dict[str, SharedGroup[T]]]]:
        """Yield ``(subscribers, shared groups)`` of every node whose filter matches ``topic``."""
        levels = topic.split("/")
        # `$` topics are hidden from wildcards in the first level only (spec 4.7.2).
        wildcards_at_root = not topic.startswith("$")
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        n_levels = len(levels)
        while stack:
            node, depth = stack.pop()
            children = node.children
            if depth == n_levels:
                yield node.subscribers, node.shared
                # `a/#` also matches `a` itself.
                hash_node = children.get("#")
                if hash_node is not None:
                    yield hash_node.subscribers, hash_node.shared
                continue
            if not children:
                continue
            if depth or wildcards_at_root:
                hash_node = children.get("#")
                if hash_node is not None:
                    yield hash_node.subscribers, hash_node.shared
                plus_node = children.get("+")
                if plus_node is not None:
                    stack.append((plus_node, depth + 1))
            exact = children.get(levels[depth])
            if exact is not None:
                stack.append((exact, depth + 1))
