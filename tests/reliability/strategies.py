"""Hypothesis strategies for hostile ids: unicode, separators, very long, control characters,
SQL and Redis-pattern metacharacters. Shared by the store and HTTP fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

METACHARACTERS = [
    "'; DROP TABLE messages; --",
    '" OR 1=1 --',
    "%",
    "_",
    "*",
    "?",
    "[a-z]",
    "{tag}",
    "a:b:c",
    "\\",
    "$1",
    "user/../../etc/passwd",
    "<script>alert(1)</script>",
    "\u202eevil",
    "🙂‍👍",
]

ids = st.one_of(
    st.text(min_size=0, max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=260),
    st.text(alphabet=st.characters(categories=["Cc", "Zs", "Cf"]), min_size=1, max_size=4),
    st.builds(
        lambda a, meta, b: a + meta + b,
        st.text(max_size=4),
        st.sampled_from(METACHARACTERS),
        st.text(max_size=4),
    ),
    st.sampled_from(["", " ", "\t", "\x00", "default", "x" * 255, "x" * 256]),
)
