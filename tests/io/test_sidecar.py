"""The sidecar as collecting reads it: the fast map is the same whether built from one split of
the file or line by line, and every custom_id is claimed at most once, by either path."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.items import Item
from runner.io import batch_files
from runner.io.batch_files import _FAST_LINE, Sidecar, _fast_grid

PLAIN = b"g0000000000000001\t1\thttps://a.example/1.jpg\ng0000000000000002\t2\thttps://a.example/2.jpg\n"
EXTRAS = b'g0000000000000003\t3\thttps://a.example/3.jpg\t{"key":"k3","meta":{"a":1}}\n'

# (sidecar bytes, the fast map it must give, whether the one-split grid can build it)
CASES: dict[str, tuple[bytes, dict[bytes, bytes], bool]] = {
    "plain": (
        PLAIN,
        {
            b"g0000000000000001": b"https://a.example/1.jpg",
            b"g0000000000000002": b"https://a.example/2.jpg",
        },
        True,
    ),
    "with-extras": (
        PLAIN + EXTRAS,
        {
            b"g0000000000000001": b"https://a.example/1.jpg",
            b"g0000000000000002": b"https://a.example/2.jpg",
        },
        False,
    ),
    "non-ascii-url": (
        "g1\t1\thttps://a.example/猫\u2028.jpg\n".encode(),
        {b"g1": "https://a.example/猫\u2028.jpg".encode()},
        True,
    ),
    "quote-in-url": (
        b'g1\t1\thttps://a.example/"x".jpg\n' + PLAIN[:44],
        {b"g0000000000000001": b"https://a.example/1.jpg"},
        False,
    ),
    "backslash-in-url": (b"g1\t1\thttps://a.example/\\x.jpg\n", {}, False),
    "control-in-url": (b"g1\t1\thttps://a.example/\x01.jpg\ng2\t2\tu\n", {b"g2": b"u"}, False),
    "cr-in-url": (b"g1\t1\thttps://a.example/x.jpg\r\n", {}, False),
    # as many tabs and lines as a grid, but one line has a field too many and the next one
    # too few: the columns would pair "X" with "2"
    "misaligned": (b"gA\t1\tu1\tX\ngB\t2\n", {}, False),
    "no-final-newline": (b"gA\t1\tu1", {b"gA": b"u1"}, False),
    "empty": (b"", {}, False),
    "empty-url": (b"gA\t1\t\n", {b"gA": b""}, True),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_fast_map_of_each_kind_of_sidecar(name: str) -> None:
    """Each sidecar gives exactly its fast map; the one-split grid builds it when every line is
    a fast line, and then equals the line-by-line map."""
    data, want, grid = CASES[name]
    assert Sidecar(data).pending == want
    assert dict(_FAST_LINE.findall(data)) == want
    assert (_fast_grid(data) is not None) == grid
    if grid:
        assert _fast_grid(data) == want


FIELD = st.text(alphabet=st.sampled_from('ab1"\\\t\x01é\u2028/'), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(FIELD, FIELD, FIELD, st.booleans()), max_size=5), st.booleans())
def test_grid_equals_line_by_line(
    lines: list[tuple[str, str, str, bool]], final_newline: bool
) -> None:
    """Whenever the grid applies, it gives what matching line by line gives (random fields with
    tabs, quotes, backslashes, control and non-ASCII characters; lines of two to four fields)."""
    text = "\n".join(f"{a}\t{b}\t{c}" if three else f"{a}\t{c}" for a, b, c, three in lines) + (
        "\n" if final_newline else ""
    )
    data = text.encode()
    grid = _fast_grid(data)
    if grid is not None:
        assert grid == dict(_FAST_LINE.findall(data))
    assert Sidecar(data).pending == dict(_FAST_LINE.findall(data))


@pytest.mark.parametrize("extras", [False, True], ids=["grid", "line-by-line"])
def test_each_id_is_claimed_once_by_either_path(extras: bool) -> None:
    """An id taken by the fast path (popped from ``pending``) cannot be claimed again by the
    full parser, nor one the full parser claimed; unclaimed ones are the rest, as Items."""
    sidecar = Sidecar(PLAIN + (EXTRAS if extras else b""))
    assert sidecar.pending.pop(b"g0000000000000001") == b"https://a.example/1.jpg"  # fast path
    assert sidecar.claim("g0000000000000001") is False
    assert sidecar.rest("g0000000000000002") == "2\thttps://a.example/2.jpg"
    assert sidecar.claim("g0000000000000002") is True
    assert sidecar.claim("g0000000000000002") is False
    assert sidecar.rest("g-unknown") is None
    unclaimed = list(sidecar.unclaimed())
    if extras:
        assert unclaimed == [
            (
                "g0000000000000003",
                Item("k3", "https://a.example/3.jpg", 3, meta={"a": 1}),
            )
        ]
        assert sidecar.claim("g0000000000000003") is True
        assert sidecar.claim("g0000000000000003") is False
    assert list(sidecar.unclaimed()) == []


def test_every_id_unclaimed_at_first() -> None:
    """Before any result, every line of the sidecar is unclaimed, in file order."""
    sidecar = Sidecar(PLAIN + EXTRAS)
    assert [cid for cid, _ in sidecar.unclaimed()] == [
        "g0000000000000001",
        "g0000000000000002",
        "g0000000000000003",
    ]


def test_a_sidecar_that_is_not_utf8_fails_as_before() -> None:
    """A sidecar that is not UTF-8 raises when read, as decoding the whole file always did."""
    with pytest.raises(UnicodeDecodeError):
        Sidecar(b"g1\t1\thttps://a.example/\xff.jpg\n")


def test_the_text_map_is_built_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidecar whose ids all went through the fast path never decodes its lines."""
    sidecar = Sidecar(PLAIN)
    monkeypatch.setattr(batch_files.Sidecar, "rests", lambda self: pytest.fail("decoded"))
    for cid in list(sidecar.pending):
        sidecar.pending.pop(cid)
    assert list(sidecar.unclaimed()) == []


def test_extras_json_survives(tmp_path: object) -> None:
    """The fourth field is the item's JSON, kept whole for the full parser."""
    rest = Sidecar(EXTRAS).rest("g0000000000000003")
    assert rest is not None and orjson.loads(rest.split("\t", 2)[2]) == {
        "key": "k3",
        "meta": {"a": 1},
    }
