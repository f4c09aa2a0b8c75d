"""The allowlist's two planners give the same table: sender_table.apply_changes
(the file backend) and store_senders.plan_changes (the SQLite and PostgreSQL
stores), on every generated table, entry list, bulk load and mode.

A store also keeps rows users validated, which a file never holds: here the
store starts with none of them, so both planners see the same table.
"""

from ansible_collections.mailops.submission.plugins.module_utils.sender_table import apply_changes, pairs_to_table
from ansible_collections.mailops.submission.plugins.module_utils.store_senders import StoreRequest, plan_changes
from hypothesis import given, settings
from hypothesis import strategies as st

SENDERS = st.sampled_from(["alice@gmail.example", "a.liddell@gmail.example", "@hosted.example", "bob@yahoo.example"])
LOGINS = st.sampled_from(["alice@runbox.com", "bob@hosted.example", "carol@runbox.com"])
PAIRS = st.sets(st.tuples(SENDERS, LOGINS), max_size=8)
ENTRIES = st.lists(
    st.one_of(
        st.tuples(SENDERS, LOGINS, st.just("present")),
        st.tuples(SENDERS, st.one_of(st.none(), LOGINS), st.just("absent")),
    ),
    max_size=6,
)


def table_pairs(table):
    return {(sender, login) for sender, logins in table.items() for login in logins.split(",")}


@settings(max_examples=400, deadline=None)
@given(current=PAIRS, entries=ENTRIES, bulk=PAIRS, exclusive=st.booleans())
def test_the_file_and_store_planners_give_the_same_pairs(current, entries, bulk, exclusive):
    table = apply_changes(pairs_to_table(current), entries, pairs_to_table(bulk), exclusive)
    plan = plan_changes(current, set(), StoreRequest(entries, set(bulk), exclusive))
    after = (current | plan.insert) - plan.delete
    assert table_pairs(table) == after
    assert (plan.pairs, plan.keys) == (len(after), len({sender for sender, _ in after}))
    # A store plan touches only what changes.
    assert not plan.insert & current and plan.delete <= current
