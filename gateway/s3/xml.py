"""S3 XML: rendering response documents and parsing the few request bodies S3 defines.

Rendering builds text directly (fast, and element order is S3's); `Element` is a tiny tree
node. Parsing uses the standard library's expat with namespaces stripped and DTDs refused, so
entity tricks never reach the parser; any structural problem raises `S3Error("MalformedXML")`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .errors import S3Error

__all__ = [
    "S3_NS",
    "Element",
    "error_document",
    "find_text",
    "iso8601",
    "parse_xml",
    "render",
]

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'

# XML 1.0 cannot carry these even escaped; S3 clients ask for encoding-type=url instead.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(text: str) -> str:
    text = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\r", "&#13;"))
    return _INVALID_XML_CHARS.sub(lambda m: f"&#{ord(m.group())};", text)


def printable(text: str) -> str:
    """Text any XML 1.0 parser accepts: characters XML cannot carry become U+FFFD (used for
    error documents, which echo whatever the client sent)."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    return _INVALID_XML_CHARS.sub("\ufffd", text)


@dataclass
class Element:
    """An XML element: a tag, attributes, text or children (never both), in document order."""

    tag: str
    text: str | None = None
    children: list[Element] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)

    def add(self, tag: str, text: str | int | bool | None = None) -> Element:
        """Append a child; booleans render as S3 does (`true`/`false`)."""
        if isinstance(text, bool):
            text = "true" if text else "false"
        child = Element(tag, None if text is None else str(text))
        self.children.append(child)
        return child

    def extend(self, tag: str, items: Iterable[tuple[str, str | int | bool | None]]) -> Element:
        child = self.add(tag)
        for name, value in items:
            child.add(name, value)
        return child

    def write(self, out: list[str]) -> None:
        start = self.tag + "".join(f' {k}="{escape(v)}"' for k, v in self.attrs.items())
        if self.text is not None:
            out.append(f"<{start}>{escape(self.text)}</{self.tag}>")
        elif self.children:
            out.append(f"<{start}>")
            for child in self.children:
                child.write(out)
            out.append(f"</{self.tag}>")
        else:
            out.append(f"<{start}></{self.tag}>")


def render(root: Element, *, namespace: bool = True) -> bytes:
    """The document for `root`, with S3's namespace on the root element."""
    out: list[str] = [XML_DECL]
    inner: list[str] = []
    root.write(inner)
    if namespace and inner:
        inner[0] = inner[0].replace(f"<{root.tag}>", f'<{root.tag} xmlns="{S3_NS}">', 1)
    out.extend(inner)
    return "".join(out).encode()


def error_document(code: str, message: str, resource: str, request_id: str,
                   fields: dict[str, str] | None = None) -> bytes:
    root = Element("Error")
    root.add("Code", code)
    root.add("Message", printable(message))
    for name, value in (fields or {}).items():
        root.add(name, printable(value))
    root.add("Resource", printable(resource))
    root.add("RequestId", request_id)
    return render(root, namespace=False)


def iso8601(ns: int) -> str:
    """S3's timestamp form in XML: 2009-10-12T17:50:30.000Z."""
    when = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_xml(body: bytes, root_tag: str) -> ET.Element:
    """Parse a request body whose root must be `root_tag`; namespaces are dropped."""
    if not body.strip():
        raise S3Error("MalformedXML")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML", "DTDs and entities are not accepted.")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error("MalformedXML") from exc
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    if root.tag != root_tag:
        raise S3Error("MalformedXML", f"The root element must be {root_tag}.")
    return root


def find_text(element: ET.Element, tag: str, *, required: bool = False) -> str | None:
    child = element.find(tag)
    if child is None:
        if required:
            raise S3Error("MalformedXML", f"The element {tag} is required.")
        return None
    return child.text or ""
