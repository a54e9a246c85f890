"""xmlguard: hostile declarations are named, plain DOCTYPEs are stripped."""

from __future__ import annotations

import pytest

from aggregator import xmlguard
from tests.support.golden import FEEDS

NETSCAPE = (
    '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"\n'
    ' "http://my.netscape.com/publish/formats/rss-0.91.dtd">'
)
ROOT = '<rss version="0.91"><channel><title>x</title></channel></rss>'


def fixture(name: str) -> str:
    return (FEEDS / name).read_text(encoding="utf-8")


# --- harmless documents ----------------------------------------------------------


def test_a_document_without_doctype_is_left_alone() -> None:
    text = '<?xml version="1.0"?>\n' + ROOT
    assert xmlguard.find_declarations(text) is None
    assert xmlguard.doctype(text) is None
    assert xmlguard.strip_doctype(text) is text


def test_the_netscape_doctype_is_harmless_and_stripped() -> None:
    text = f'<?xml version="1.0" encoding="ISO-8859-1"?>\n{NETSCAPE}\n{ROOT}'
    assert xmlguard.find_declarations(text) is None
    assert xmlguard.doctype(text) == NETSCAPE
    assert (
        xmlguard.strip_doctype(text)
        == f'<?xml version="1.0" encoding="ISO-8859-1"?>\n\n{ROOT}'
    )


@pytest.mark.parametrize(
    "declaration",
    [
        "<!DOCTYPE rss>",
        '<!DOCTYPE rss SYSTEM "http://my.netscape.com/publish/formats/rss-0.91.dtd">',
        '<!doctype rss system "rss.dtd">',
        # quoted ids may hold the characters that end a DOCTYPE or open a subset
        '<!DOCTYPE rss SYSTEM "http://example.com/a[1]>.dtd">',
        "<!DOCTYPE rss PUBLIC '-//x//y>' 'z.dtd'>",
    ],
)
def test_plain_doctypes_are_stripped_whole(declaration: str) -> None:
    text = f"<?xml version='1.0'?><!-- generated -->{declaration}{ROOT}"
    assert xmlguard.find_declarations(text) is None
    assert (
        xmlguard.strip_doctype(text) == f"<?xml version='1.0'?><!-- generated -->{ROOT}"
    )


def test_declarations_inside_the_body_are_not_the_prolog() -> None:
    # CDATA after the root element: no parser reads it as a declaration
    text = '<rss><channel><description><![CDATA[<!DOCTYPE x [<!ENTITY a "b">]>]]>'
    text += "</description></channel></rss>"
    assert xmlguard.find_declarations(text) is None
    assert xmlguard.strip_doctype(text) is text


def test_processing_instructions_may_hold_angle_brackets() -> None:
    text = '<?xml-stylesheet href="a>b.xsl"?><!DOCTYPE rss>' + ROOT
    assert xmlguard.find_declarations(text) is None
    assert xmlguard.strip_doctype(text) == '<?xml-stylesheet href="a>b.xsl"?>' + ROOT


# --- hostile documents -----------------------------------------------------------


def test_billion_laughs_is_refused() -> None:
    problem = xmlguard.find_declarations(fixture("hostile_billion_laughs.xml"))
    assert problem is not None
    assert problem.startswith("hostile XML: DOCTYPE declares 10 entities (first 'lol'")


def test_one_huge_entity_is_refused_without_expanding_it() -> None:
    big = "x" * 1_000_000  # referenced 10,000 times: 10 GB if it were expanded
    text = f'<!DOCTYPE rss [<!ENTITY big "{big}">]><rss>{"&big;" * 10_000}</rss>'
    problem = xmlguard.find_declarations(text)
    assert problem is not None
    assert "1 entity (first 'big'" in problem
    assert len(problem) < 200


def test_an_external_entity_is_refused_and_named() -> None:
    problem = xmlguard.find_declarations(fixture("hostile_xxe.xml"))
    assert problem == (
        "hostile XML: DOCTYPE declares external entity 'xxe' (SYSTEM 'file:///etc/passwd')"
    )


def test_parameter_entities_are_refused() -> None:
    problem = xmlguard.find_declarations(fixture("hostile_parameter_entities.xml"))
    assert problem == (
        "hostile XML: DOCTYPE declares external entity '%file' "
        "(SYSTEM 'file:///etc/hostname')"
    )
    internal = "<!DOCTYPE r [<!ENTITY % p \"<!ENTITY a 'b'>\"> %p;]><rss/>"
    assert xmlguard.find_declarations(internal) == (
        "hostile XML: DOCTYPE declares parameter entity '%p'"
    )


def test_a_public_external_entity_is_refused() -> None:
    text = '<!DOCTYPE r [<!ENTITY e PUBLIC "-//A//B" "http://evil.invalid/e">]><rss>&e;</rss>'
    assert xmlguard.find_declarations(text) == (
        "hostile XML: DOCTYPE declares external entity 'e' (PUBLIC '-//A//B')"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '<!DOCTYPE r [<!ATTLIST rss a CDATA "x">]><rss/>',
            "DOCTYPE has an internal subset",
        ),
        ("<!DOCTYPE rss []><rss/>", "DOCTYPE has an internal subset"),
        ('<!doctype rss [<!entity a "b">]><rss/>', "DOCTYPE declares 1 entity"),
        (
            '<!DOCTYPE rss SYSTEM "rss.dtd><rss/>',
            "the DOCTYPE declaration is not closed",
        ),
        ("<!DOCTYPE rss><!DOCTYPE rss><rss/>", "more than one DOCTYPE declaration"),
        # feedparser's regular expressions look for declarations in comments too
        ('<!--\n<!ENTITY a "xxx">\n--><rss/>', "entity 'a' declared outside a DOCTYPE"),
        (
            'junk <!ENTITY a "xxx">\n<rss>&a;</rss>',
            "entity 'a' declared outside a DOCTYPE",
        ),
        # a "<a>" inside a comment does not end the prolog
        (
            '<!-- <a> --><!DOCTYPE rss [<!ENTITY a "b">]><rss/>',
            "DOCTYPE declares 1 entity",
        ),
    ],
)
def test_other_declarations_are_refused(text: str, problem: str) -> None:
    found = xmlguard.find_declarations(text)
    assert found is not None
    assert found.startswith("hostile XML: ")
    assert problem in found


def test_a_doctype_with_a_subset_is_stripped_whole_too() -> None:
    # strip_doctype is safe on its own: no entity declaration survives it
    text = fixture("hostile_billion_laughs.xml")
    stripped = xmlguard.strip_doctype(text)
    assert "<!ENTITY" not in stripped
    assert "<!DOCTYPE" not in stripped
    assert stripped.startswith(
        '<?xml version="1.0" encoding="utf-8"?>\n\n<rss version="2.0">'
    )


def test_a_subset_holding_brackets_in_literals_is_stripped_to_its_real_end() -> None:
    text = '<!DOCTYPE r [<!ENTITY a "]>"><!-- ]> -->]><rss/>'
    assert xmlguard.strip_doctype(text) == "<rss/>"
