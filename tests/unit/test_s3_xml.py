"""S3 XML rendering (escaping, namespace, S3's booleans and timestamps) and request parsing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.s3.errors import S3Error
from gateway.s3.xml import S3_NS, Element, error_document, find_text, iso8601, parse_xml, render


def test_render_escapes_and_namespaces():
    root = Element("ListBucketResult")
    root.add("Name", "a&b<c>\"d\"")
    root.add("IsTruncated", True)
    root.add("KeyCount", 3)
    root.add("Empty")
    doc = render(root)
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    parsed = ET.fromstring(doc)
    assert parsed.tag == f"{{{S3_NS}}}ListBucketResult"
    assert parsed.find(f"{{{S3_NS}}}Name").text == 'a&b<c>"d"'
    assert parsed.find(f"{{{S3_NS}}}IsTruncated").text == "true"
    assert parsed.find(f"{{{S3_NS}}}KeyCount").text == "3"
    assert parsed.find(f"{{{S3_NS}}}Empty").text is None


def test_control_characters_stay_well_formed():
    doc = render(Element("Key", "tab\there\x01ctrl\rcr"))
    ET.fromstring(doc.replace(b"&#1;", b""))  # still parses once the XML-1.0-illegal ref goes
    assert b"&#13;" in doc


def test_error_document():
    doc = error_document("NoSuchKey", "The specified key does not exist.", "/b/k", "REQ1",
                         {"Key": "k"})
    parsed = ET.fromstring(doc)
    assert parsed.tag == "Error"
    assert [c.tag for c in parsed] == ["Code", "Message", "Key", "Resource", "RequestId"]
    assert parsed.findtext("RequestId") == "REQ1"


def test_iso8601():
    assert iso8601(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123Z"


def test_parse_with_and_without_namespace():
    for body in (b"<Delete><Object><Key>a</Key></Object></Delete>",
                 f'<Delete xmlns="{S3_NS}"><Object><Key>a</Key></Object></Delete>'.encode()):
        root = parse_xml(body, "Delete")
        assert root.find("Object").findtext("Key") == "a"
        assert find_text(root.find("Object"), "Key") == "a"


@pytest.mark.parametrize("body", [
    b"", b"   ", b"<Delete>", b"<Other/>", b"not xml at all",
    b'<!DOCTYPE d [<!ENTITY x "y">]><Delete>&x;</Delete>',
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><Delete/>'])
def test_parse_rejects(body):
    with pytest.raises(S3Error) as exc:
        parse_xml(body, "Delete")
    assert exc.value.code == "MalformedXML"


def test_required_element():
    root = parse_xml(b"<Delete></Delete>", "Delete")
    with pytest.raises(S3Error):
        find_text(root, "Object", required=True)
    assert find_text(root, "Quiet") is None
