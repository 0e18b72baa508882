"""Tag sets on the wire (gateway/s3/tagging.py): the <Tagging> document, the x-amz-tagging
header, and S3's limits, each refused with S3's code."""

from __future__ import annotations

import pytest

from gateway.s3.errors import S3Error
from gateway.s3.tagging import (
    check_tags,
    parse_tagging_header,
    parse_tagging_xml,
    render_tagging,
)


def _doc(*pairs: tuple[str, str], ns: bool = True) -> bytes:
    xmlns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if ns else ""
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f"<Tagging{xmlns}><TagSet>{tags}</TagSet></Tagging>".encode()


def _refused(call, *args, **kwargs) -> tuple[str, int, str]:
    with pytest.raises(S3Error) as exc:
        call(*args, **kwargs)
    return exc.value.code, exc.value.status, exc.value.message


def test_document_round_trip_in_key_order():
    tags = parse_tagging_xml(_doc(("b", "2"), ("a", "1"), ("empty", "")))
    assert list(tags.items()) == [("a", "1"), ("b", "2"), ("empty", "")]
    assert parse_tagging_xml(render_tagging(tags)) == tags
    assert parse_tagging_xml(_doc(("k", "v"), ns=False)) == {"k": "v"}
    assert parse_tagging_xml(b"<Tagging><TagSet/></Tagging>") == {}
    escaped = render_tagging({"a&b": "<x>"})
    assert b"<Key>a&amp;b</Key><Value>&lt;x&gt;</Value>" in escaped
    assert parse_tagging_xml(escaped) == {"a&b": "<x>"}


@pytest.mark.parametrize("body", [
    b"", b"<Tagging><TagSet>", b"<Tagging></Tagging>", b"<TagSet></TagSet>",
    b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
    b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
    b"<Tagging><TagSet><Other/></TagSet></Tagging>",
])
def test_malformed_documents(body):
    assert _refused(parse_tagging_xml, body)[:2] == ("MalformedXML", 400)


def test_limits_of_an_object_tag_set():
    ten = [(f"k{i}", "v") for i in range(10)]
    assert len(check_tags(ten)) == 10
    assert _refused(check_tags, [*ten, ("k10", "v")]) == (
        "BadRequest", 400, "Object tags cannot be greater than 10")
    assert check_tags([("k" * 128, "v" * 256)])
    assert _refused(check_tags, [("k" * 129, "v")])[:2] == ("InvalidTag", 400)
    assert _refused(check_tags, [("k", "v" * 257)])[:2] == ("InvalidTag", 400)
    assert _refused(check_tags, [("", "v")])[:2] == ("InvalidTag", 400)
    assert _refused(check_tags, [("a", "1"), ("a", "2")]) == (
        "InvalidTag", 400, "Cannot provide multiple Tags with the same key")
    for key in ("aws:cost", "AWS:cost"):
        assert _refused(check_tags, [(key, "v")])[:2] == ("InvalidTag", 400)
    assert check_tags([("team:aws:x", "v")]) == {"team:aws:x": "v"}
    assert _refused(check_tags, [("tab\tkey", "v")])[:2] == ("InvalidTag", 400)


def test_lengths_count_utf16_units_as_s3():
    assert check_tags([("é" * 128, "ü" * 256)])  # one unit each
    assert check_tags([("\U0001F600" * 64, "v")])  # two units each: 128
    assert _refused(check_tags, [("\U0001F600" * 65, "v")])[:2] == ("InvalidTag", 400)


def test_bucket_limits():
    fifty = [(f"k{i:02d}", "v") for i in range(50)]
    assert len(check_tags(fifty, bucket=True)) == 50
    assert _refused(check_tags, [*fifty, ("x", "v")], bucket=True)[:2] == ("BadRequest", 400)
    assert _refused(check_tags, [("aws:x", "v")], bucket=True) == (
        "InvalidTag", 400, "System tags cannot be added/updated by requester")
    eleven = _doc(*[(f"k{i}", "v") for i in range(11)])
    assert len(parse_tagging_xml(eleven, bucket=True)) == 11
    assert _refused(parse_tagging_xml, eleven)[:2] == ("BadRequest", 400)


def test_header_is_a_url_encoded_query():
    assert parse_tagging_header("") == {}
    assert parse_tagging_header("foo=bar&bar") == {"bar": "", "foo": "bar"}
    assert parse_tagging_header("a%20b=c%26d&e=f+g&&") == {"a b": "c&d", "e": "f g"}
    assert parse_tagging_header("k=%E2%82%AC") == {"k": "\u20ac"}
    assert list(parse_tagging_header("z=1&a=2")) == ["a", "z"]


@pytest.mark.parametrize("value", ["a=1&a=2", "TagSet=[{Key=string,Value=string}]", "k=%FF"])
def test_header_that_is_not_a_query(value):
    assert _refused(parse_tagging_header, value)[:2] == ("InvalidArgument", 400)


def test_header_limits_are_the_document_limits():
    eleven = "&".join(f"k{i}=v" for i in range(11))
    assert _refused(parse_tagging_header, eleven)[:2] == ("BadRequest", 400)
    assert _refused(parse_tagging_header, "aws%3Ax=1")[:2] == ("InvalidTag", 400)
    assert _refused(parse_tagging_header, "k=" + "v" * 257)[:2] == ("InvalidTag", 400)
