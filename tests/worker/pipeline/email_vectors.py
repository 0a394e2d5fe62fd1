"""The project's email vectors: the addresses the tests and the bench use, and hypothesis
strategies for local parts and domains, shared by the tests that compare our email checks with
email-validator's public `validate_email`."""

from __future__ import annotations

from hypothesis import strategies as st

from bench.data import signatures

LOCAL_CHARS = "abcXYZ019.+-_!#$%&'*/=?^`{|}~\"\\ @<>()[],;:é\u00a0\x00ßü中\u0301\u200b\ufeff\u202e\U0001f600"
DOMAINS = [
    "gmail.com",
    "GMAIL.COM",
    "example.org",
    "a.b",
    "localhost",
    "-x.com",
    "x-.com",
    "x..com",
    "x.com.",
    ".x.com",
    "xn--exmple-cua.com",
    "xn--zz.com",
    "exämple.com",
    "[127.0.0.1]",
    "123.com",
    "x.invalid",
    "x.local",
    "a" * 64 + ".com",
    "a" * 63 + ".com",
    ("a" * 60 + ".") * 4 + "com",
    "x_y.com",
    "x.c",
    "example.test",
    "",
    "x.com@y.com",
]
local_parts = st.one_of(
    st.text(alphabet=LOCAL_CHARS, min_size=0, max_size=70),
    st.from_regex(r"[a-zA-Z0-9]{1,20}([.+][a-zA-Z0-9]{1,20}){0,3}", fullmatch=True),
    st.sampled_from(["postmaster", "Abuse", "HOSTMASTER", "a" * 64, "a" * 65, "a" * 200, "é" * 120]),
    st.from_regex(r"[a-zé中ü]{1,10}(\.[a-zß]{1,5})?", fullmatch=True),
)
domains = st.one_of(st.sampled_from(DOMAINS), st.text(alphabet="abcXY09.-", min_size=0, max_size=30))

# Addresses the tests type, valid and not, and the bench's signers (its 2 % invalid included).
TYPED = [
    "Clara.Long@Example.org",
    "clara+petitions@example.org",
    "C.L.A.R.A@gmail.com",
    "clara+x@googlemail.com",
    "CL.ara+tag+more@GoogleMail.com",
    "+only@example.org",
    "josé@exämple.com",
    "Clara.Long+x@Gmail.com",
    "Ann.Lee+x@GMail.com",
    "bob@xn--exmple-cua.com",
    "chloé.1@gmail.com",
    "a.n.n.l.e.e@GMAIL.com",
    "ANN.LEE+petition@googlemail.com",
    "PostMaster@Example.org",
    "a@b.c",
    "ann@localhost",
    "no-at-sign",
    "a@b",
    "a@@b.com",
    "a@b@c.org",
    "a b@c.com",
    "@example.org",
    "x@-.com",
    "e\u0301@example.org",
    "a" * 64 + "@" + "a" * 63 + ".com",
    "x@" + ("a" * 60 + ".") * 4 + "com",
]
ADDRESSES = TYPED + [signature.email for signature in signatures(400)]
