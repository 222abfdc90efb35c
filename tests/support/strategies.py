"""Hypothesis strategies several test modules draw from."""

from __future__ import annotations

from hypothesis import strategies as st


def scalar_text() -> st.SearchStrategy[str]:
    """Text a client may send where a number or short value is expected: numbers written every
    way, the odd spellings parsers trip on, and any short text."""
    numbers = st.one_of(
        st.integers(-(2**40), 2**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["", "nan", "inf", "-0", "1e309", "0x10", "1_000", " 3 ", "true"]),
    )
    return numbers | st.text(max_size=20)
