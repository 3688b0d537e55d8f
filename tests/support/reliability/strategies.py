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

URL_METACHARACTERS = [
    "/",
    "//",
    ".",
    "..",
    "../",
    "./x",
    "%2F",
    "%252F",
    "%00",
    "%",
    "?q=1",
    "#frag",
    "&",
    "+",
    ";",
    " ",
    "\u2028",
    "\ufeff",
]


def path_shaped_ids(victim_user: str, victim_session: str) -> st.SearchStrategy[str]:
    """Ids that, put unescaped or once-decoded into a URL path, name another route or another
    user's data: `victim/sessions/s`, `../victim`, `x/../victim` ..."""
    return st.one_of(
        st.sampled_from(
            [
                f"{victim_user}/sessions/{victim_session}",
                f"{victim_user}/sessions/{victim_session}/messages",
                f"{victim_user}/export",
                f"../{victim_user}",
                f"x/../{victim_user}",
                f"{victim_user}/",
                f"{victim_user}%2Fsessions%2F{victim_session}",
            ]
        ),
        st.builds(
            lambda a, meta, b: a + meta + b,
            st.text(max_size=3),
            st.sampled_from(URL_METACHARACTERS),
            st.text(max_size=3),
        ),
    )


def http_ids(victim_user: str, victim_session: str) -> st.SearchStrategy[str]:
    """Hostile ids for the HTTP API: every store-level hostile id, and ids with URL
    metacharacters or shaped like a path to `victim_user`'s data."""
    return st.one_of(ids, path_shaped_ids(victim_user, victim_session))


message_texts = st.one_of(
    st.just("My name is Ada"),
    st.text(max_size=30),
    st.sampled_from(["", "   ", "\n", "\ud800 lone surrogate", "x" * 5000, "\x00", "{}"]),
)
"""What a user may say: ordinary, empty, blank, invalid text (a lone surrogate), long."""

header_texts = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
"""Header values a client can send (latin-1, no CR/LF, which HTTP servers reject first)."""
