"""Property: no key that the validator accepts is misread by Postfix's own table code.

Keys come from an alphabet wider than what is allowed (specials, Unicode, dots,
'@', '#', whitespace); every key the validator accepts goes through the real
postmap into a real lmdb map, and a lookup of it, and of its upper-case form,
must return exactly the login it was stored with.
"""

import subprocess

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_sender
from ansible_collections.mailops.submission.plugins.module_utils.table_source import render_body
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import (
    POSTMAP,
    empty_postfix_config,
)
from hypothesis import HealthCheck, Phase, assume, find, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(POSTMAP is None, reason="Postfix's postmap is not installed")

LOCAL_CHARS = "abcXYZ019.+-_=#$&'*/?^`{|}~!%\"\\,:;()<>[]@ \té"
LABEL_CHARS = "abcQRZ09-_.ü"

# Mostly-valid local parts find the edge cases of what is accepted; the wide
# alphabet checks that nothing dangerous gets through.
local_parts = st.one_of(
    st.text(alphabet="abcXYZ019.+-_=#$&'*/?^`{|}~", min_size=0, max_size=70),
    st.text(alphabet=LOCAL_CHARS, min_size=0, max_size=70),
)
labels = st.text(alphabet=LABEL_CHARS, min_size=1, max_size=12)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
wide_keys = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
# Keys of the accepted shape (dot-separated atoms, two or more labels, Unicode
# labels included), so that most draws hold keys that reach postmap.
atoms = st.text(alphabet="abcXYZ019+-_=$&'*/?^`{|}~", min_size=1, max_size=8)
shaped_labels = st.from_regex(r"[a-z0-9ü](?:[a-z0-9ü-]{0,8}[a-z0-9ü])?", fullmatch=True)
shaped_keys = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.one_of(st.just(""), st.lists(atoms, min_size=1, max_size=3).map(".".join)),
    st.lists(shaped_labels, min_size=2, max_size=3).map(".".join),
)
keys = st.one_of(shaped_keys, wide_keys)


def accepted(raw_keys):
    out = {}
    for index, raw in enumerate(raw_keys):
        try:
            out[normalize_sender(raw)] = (raw, f"user{index}@runbox.com")
        except AddressError:
            continue
    return out


# 100 draws of up to 30 keys each, every run (about 0.05 s a draw with an old main.cf).
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(keys, min_size=1, max_size=30))
def test_accepted_keys_read_back_exactly(tmp_path_factory, raw_keys):
    table = accepted(raw_keys)
    # A draw with no accepted key checks nothing: hypothesis draws again.
    assume(table)
    work = tmp_path_factory.mktemp("prop")
    empty_postfix_config(work)
    source = work / "senders"
    source.write_text(render_body({key: login for key, (_, login) in table.items()}))
    subprocess.run([POSTMAP, "-c", str(work), f"lmdb:{source}"], check=True, capture_output=True)
    queries = list(table) + [raw for raw, _ in table.values() if raw.isascii()]
    lookup = subprocess.run(
        [POSTMAP, "-c", str(work), "-q", "-", f"lmdb:{source}"],
        input="".join(q + "\n" for q in queries),
        capture_output=True,
        text=True,
        check=False,
    )
    found = dict(line.split("\t", 1) for line in lookup.stdout.splitlines())
    for key, (raw, login) in table.items():
        assert found.get(key) == login, f"{key!r} read back as {found.get(key)!r}"
        if raw.isascii():
            assert found.get(raw) == login, f"{raw!r} (as typed) read back as {found.get(raw)!r}"
    stored = subprocess.run(
        [POSTMAP, "-c", str(work), "-s", f"lmdb:{source}"], capture_output=True, text=True, check=True
    ).stdout
    assert len(stored.splitlines()) == len(table), "postmap stored a different number of keys"


def test_the_strategy_reaches_keys_the_validator_accepts():
    """Guards the property above: a strategy whose draws are all refused would
    make it pass while checking nothing."""
    draw = find(
        st.lists(keys, min_size=1, max_size=30),
        lambda raw_keys: len(accepted(raw_keys)) >= 3,
        # Found, not shrunk: shrinking to the smallest such list costs half a minute.
        settings=settings(max_examples=500, database=None, phases=[Phase.generate]),
    )
    assert len(accepted(draw)) >= 3
