"""Reading a lab file's YAML within bounds, before any of it is looked at.

A lab file is a few KB, a handful of levels deep, with few aliases or none. YAML can say
much more in a few bytes: nine nested aliases of nine make a 1 KB file that expands to
387 million values ("billion laughs"), and a few thousand brackets exhaust Python's stack.
So the size is checked before parsing, and the node tree is composed (nothing is
constructed) under limits on nesting, aliases, values counted with every alias expanded,
and the length of each key or value. LIMITS is the one place they are set; docs/labs.md
lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class LabLimits:
    file_bytes: int = 256 * 1024  # read before parsing
    depth: int = 32  # nested lists and mappings (a lab needs 5)
    aliases: int = 64  # *name references in the file
    values: int = 100_000  # keys and values, each alias counted as everything it stands for
    string_chars: int = 4096  # one key or value (Linux's PATH_MAX)


LIMITS = LabLimits()


class LimitExceeded(Exception):
    """The YAML goes past one of the limits: where, what, and what to do."""

    def __init__(self, mark: yaml.Mark, problem: str):
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """Composes one document's node tree, counting as it goes, so nothing past a limit is ever built."""

    def __init__(self, text: str, limits: LabLimits):
        super().__init__(text)
        self.limits = limits
        self._depth = 0
        self._aliases = 0
        self._values = 0
        self._expanded: dict[int, int] = {}  # id(anchored node) -> values it holds, its aliases expanded

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > self.limits.values:
            raise LimitExceeded(mark, f"holds more than {self.limits.values} values once its aliases are "
                                "expanded; write the values out, without nested aliases")

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self.limits.aliases:
                raise LimitExceeded(event.start_mark, f"more than {self.limits.aliases} aliases (*{event.anchor}); "
                                    "write the values out instead")
            node = super().compose_node(parent, index)
            self._count(self._expanded.get(id(node), 1), event.start_mark)  # 1: an alias inside its own anchor
            return node
        if self._depth >= self.limits.depth:
            raise LimitExceeded(event.start_mark, f"nested deeper than {self.limits.depth} levels; "
                                "check the brackets and the indentation")
        before = self._values
        self._count(1, event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.ScalarNode) and len(node.value) > self.limits.string_chars:
            raise LimitExceeded(event.start_mark, f"a key or value of {len(node.value)} characters, more than "
                                f"{self.limits.string_chars}; shorten it")
        if event.anchor is not None:
            self._expanded[id(node)] = self._values - before
        return node


def compose(text: str, limits: LabLimits = LIMITS) -> yaml.Node | None:
    """The node tree of a single-document YAML text (None when it is empty), within `limits`.
    Raises yaml.YAMLError for bad syntax and LimitExceeded past a limit."""
    loader = _BoundedLoader(text, limits)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()
