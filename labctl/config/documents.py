"""YAML with line numbers: lab and experiment files read with a strict loader, every key's line kept."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labctl.core.errors import ConfigError, ConfigErrors

Location = tuple  # a location in a document: keys and list indices, e.g. ("steps", 3, "current_density")


@dataclass
class Document:
    """A YAML file's data, the 1-based line of every mapping key and list item, and YAML-level problems.

    Parameters
    ----------
    path : str or Path
        The file, as given (used in messages).
    data : Any
        The parsed content.
    lines : dict
        Line of each location, e.g. ``{("steps", 0, "plan"): 12}``; ``()`` is the document's start.
    problems : list of ConfigError
        Problems found while reading, such as duplicate keys.
    """

    path: str | Path
    data: Any = None
    lines: dict[Location, int] = field(default_factory=dict)
    problems: list[ConfigError] = field(default_factory=list)
    values: int = 0  # values built so far, against MAX_VALUES

    def line(self, location: Location) -> int | None:
        """Return the line of ``location``, or of its nearest ancestor that is in the file."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return None

    def error(self, location: Location, message: str) -> ConfigError:
        """Return a :class:`ConfigError` for ``location`` in this file."""
        return ConfigError(self.path, self.line(location), dotted(location), message)


# Budgets of the YAML reader: a lab or experiment file has a few hundred values, a dozen levels deep.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32  # nested mappings and lists
MAX_VALUES = 20_000  # keys, items and scalars after aliases are expanded (a "billion laughs" file)


class _RefusedYAML(yaml.MarkedYAMLError):
    """A YAML construct labctl refuses (a tag, too deep a nesting), at its place in the file."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses every explicit tag and nesting deeper than :data:`MAX_DEPTH`.

    SafeLoader would build ``!!binary``, ``!!set`` or ``!!timestamp`` values, and silently keep
    unknown ``!tags``; none belongs in a lab or experiment file. Depth is checked while composing,
    so a 3000-deep file is refused before Python's recursion limit is reached.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            tag = tag.replace("tag:yaml.org,2002:", "!!")[:40]  # as written
            raise _RefusedYAML(None, None, f"the tag {tag} is not allowed: labctl files hold plain values "
                                           f"(text, numbers, lists, mappings), without tags", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _RefusedYAML(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: str | Path) -> Document:
    """Read a YAML file, keeping line numbers; raise ConfigErrors if it cannot be read or parsed.

    Refused, each with its line: bytes that are not UTF-8, control characters, tags, nesting deeper
    than :data:`MAX_DEPTH`, aliases expanding past :data:`MAX_VALUES` values; and files larger than
    :data:`MAX_FILE_BYTES` or that are not regular files (a FIFO or a device would block or never end).
    No message quotes the file's contents beyond a key or a short value.
    """
    document = Document(path)
    text = _read_text(path)
    loader = None
    try:
        loader = StrictLoader(text)  # it composes the nodes; _build turns them into data, noting lines
        node = loader.get_single_node()
        if node is not None:
            document.lines[()] = node.start_mark.line + 1
            document.data = _build(loader, node, (), document)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = ": ".join(p for p in (err.context, err.problem) if p)
        refused = isinstance(err, _RefusedYAML)
        raise ConfigErrors([ConfigError(path, line, None, problem if refused else f"not valid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as err:  # a control character: say where, not what the file holds
        line = text.count("\n", 0, err.position) + 1
        raise ConfigErrors([ConfigError(path, line, None, f"not a text file: control character "
                                                          f"0x{err.character:02x}")]) from None
    except yaml.YAMLError as err:
        raise ConfigErrors([ConfigError(path, None, None, f"not valid YAML: {err}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return document


def _read_text(path: str | Path) -> str:
    """Return the file's text, refusing what is not a small regular UTF-8 text file."""
    try:
        if not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "not a regular file" if Path(path).exists() else "no such file"
            raise ConfigErrors([ConfigError(path, None, None, f"cannot read the file: {what}")])
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigErrors([ConfigError(path, None, None, f"cannot read the file: {err.strerror or err}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigErrors([ConfigError(path, None, None, f"the file is larger than {MAX_FILE_BYTES:,} bytes: "
                                                          f"not a lab or experiment file")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line, column = data.count(b"\n", 0, err.start) + 1, err.start - line_start + 1
        raise ConfigErrors([ConfigError(path, line, None, f"not UTF-8 text: byte 0x{data[err.start]:02x} at column "
                                                          f"{column}; save the file as UTF-8")]) from None


def _build(loader: yaml.SafeLoader, node: yaml.Node, location: Location, document: Document) -> Any:
    """Turn a composed node into Python data, recording the line of every key and item below it."""
    document.values += 1
    if document.values > MAX_VALUES:  # aliases share nodes: a small file can expand without bound
        # On the line of the top-level key being expanded: an aliased node's own mark is its anchor's.
        raise ConfigErrors([ConfigError(document.path, document.line(location[:1]), None,
                                        f"more than {MAX_VALUES:,} values once aliases are expanded "
                                        f"(aliases repeat what they point at)")])
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(loader, node, location, document)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            document.lines[(*location, index)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*location, index), document))
        return items
    return loader.construct_object(node, deep=True)


def _build_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, location: Location, document: Document) -> dict:
    _refuse_duplicates(loader, node, location, document)
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) put their pairs first: later ones win
    result = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):
            document.problems.append(ConfigError(document.path, line, dotted(location), "keys must be plain text"))
            continue
        document.lines[(*location, key)] = line
        result[key] = _build(loader, value_node, (*location, key), document)
    return result


def _refuse_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, location: Location, document: Document) -> None:
    # PyYAML silently keeps the last of two equal keys; in a lab file that hides a typo or a limit.
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, Hashable) and key in first:
            document.problems.append(ConfigError(
                document.path, line, dotted((*location, key)),
                f"duplicate key {key!r} (first given on line {first[key]}): keep one of them",
            ))
        elif isinstance(key, Hashable):
            first[key] = line


def dotted(location: Location) -> str:
    """Return a location as a dotted field name: ``("steps", 3, "pressure")`` -> ``steps[3].pressure``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
