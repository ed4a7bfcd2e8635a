"""Hypothesis strategies shared by the test suite: addresses, header values, messages."""

from __future__ import annotations

from hypothesis import strategies as st

from sendchannel import Attachment, Message

_ATOM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"

atoms = st.text(alphabet=_ATOM_CHARS, min_size=1, max_size=12)
local_parts = st.lists(atoms, min_size=1, max_size=3).map(".".join).filter(lambda s: len(s) <= 64)

ascii_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
unicode_labels = st.sampled_from(["bücher", "münchen", "例え", "παράδειγμα", "почта", "straße-x"])
labels = st.one_of(ascii_labels, ascii_labels, unicode_labels)
tlds = st.sampled_from(["com", "org", "example", "de", "io"])
domains = st.builds(
    lambda parts, tld: ".".join([*parts, tld]), st.lists(labels, min_size=1, max_size=3), tlds
)

bare_addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)

#: Display names: printable text (any script), no control characters, no leading/trailing space.
display_names = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='"\\'),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)

addresses = st.one_of(
    bare_addresses,
    st.builds(lambda name, addr: f'"{name}" <{addr}>', display_names, bare_addresses),
)

#: One-line header text, any script, including leading/trailing/double spaces.
header_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=120)

body_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=400
)

filenames = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda s: s.strip() == s and s)

attachments = st.builds(
    Attachment,
    filenames,
    st.binary(max_size=300),
    st.sampled_from(["application/octet-stream", "image/png", "text/plain", "application/pdf"]),
)

header_names = st.from_regex(r"X-[A-Za-z0-9][A-Za-z0-9-]{0,15}", fullmatch=True)


@st.composite
def messages(draw: st.DrawFn, *, bcc: bool = True) -> Message:
    """Valid messages: any mix of recipients, non-ASCII text, bodies, headers and attachments."""
    to = draw(st.lists(addresses, max_size=3))
    cc = draw(st.lists(addresses, max_size=2))
    blind = draw(st.lists(addresses, max_size=2)) if bcc else []
    if not (to or cc or blind):
        to = [draw(addresses)]
    names = draw(st.lists(header_names, max_size=3, unique_by=str.lower))
    headers = {name: draw(header_text) for name in names}
    return Message(
        draw(addresses),
        to,
        cc=cc,
        bcc=blind,
        reply_to=draw(st.lists(addresses, max_size=1)),
        subject=draw(header_text),
        text=draw(st.none() | body_text),
        html=draw(st.none() | body_text.map(lambda t: f"<p>{t}</p>")),
        headers=headers,
        attachments=draw(st.lists(attachments, max_size=3)),
    )
