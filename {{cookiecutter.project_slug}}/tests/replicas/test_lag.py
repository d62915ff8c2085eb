"""What the process knows of replica lag: WAL positions and the positions it learnt."""

import pytest

from config.replicas import wal
from config.replicas.lag import PrimaryPositions, ReplicaState, lag
from tests.replicas.conftest import primary_position, read_alias, routed


def test_wal_positions_compare_as_numbers():
    assert wal.parse("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert wal.parse("1/0") > wal.parse("0/FFFFFFFF")


def test_a_wal_position_is_written_as_postgresql_writes_it():
    assert wal.format(wal.parse("16/B374D848")) == "16/B374D848"


@pytest.mark.parametrize("text", ["", "16", "zz/1", "1/2/3"])
def test_anything_else_is_not_a_wal_position(text):
    with pytest.raises(ValueError):
        wal.parse(text)


@pytest.mark.parametrize(
    ("insert", "written"),
    [(5 * 8192 + 24, 5 * 8192), (3 * 2**24 + 40, 3 * 2**24), (5 * 8192 + 96, 5 * 8192 + 96)],
    ids=["past-a-page-header", "past-a-segment-header", "mid-page"],
)
def test_an_insert_position_past_a_page_header_is_the_page_start(insert, written):
    assert wal.written(insert) == written


def test_a_replica_is_skipped_for_what_its_look_shows():
    assert ReplicaState(True, True, 1, 0.0).problem(10) is None
    assert "lags 11.0s" in ReplicaState(True, True, 1, 11.0).problem(10)
    assert "not streaming" in ReplicaState(True, False, 1, 0.0).problem(10)
    assert "promoted" in ReplicaState(False, False, 1, None).problem(10)


def test_a_replica_short_of_a_learnt_position_lags_since_it_was_learnt(clock):
    positions = PrimaryPositions(clock)
    positions.learn(200)
    clock.advance(3.0)
    positions.learn(300)
    clock.advance(2.0)
    assert positions.lag(100) == 5.0
    assert positions.lag(200) == 2.0
    assert positions.lag(300) == 0.0


def test_positions_learnt_close_together_are_dated_by_the_first(clock):
    positions = PrimaryPositions(clock)
    positions.learn(200)
    clock.advance(0.05)
    positions.learn(300)
    clock.advance(0.95)
    assert positions.lag(250) == pytest.approx(1.0)


def test_a_position_learnt_again_keeps_its_first_date(clock):
    positions = PrimaryPositions(clock)
    positions.learn(200)
    clock.advance(4.0)
    positions.learn(200)
    positions.learn(150)
    clock.advance(1.0)
    assert positions.lag(100) == 5.0


def test_a_primary_behind_what_was_learnt_forgets_the_positions_past_it(clock):
    # A failover to a standby that had not received everything: a new timeline.
    positions = PrimaryPositions(clock)
    positions.learn(500)
    clock.advance(1.0)
    positions.learn(300, from_primary=True)
    clock.advance(0.5)
    assert positions.lag(299) == 0.5
    assert positions.lag(300) == 0.0


def test_a_pin_cookie_behind_what_was_learnt_forgets_nothing(clock):
    positions = PrimaryPositions(clock)
    positions.learn(500)
    clock.advance(1.0)
    positions.learn(300)  # an older client's pin
    clock.advance(1.0)
    assert positions.lag(400) == 2.0


def test_a_learnt_position_counts_until_it_is_kept_no_longer(clock):
    positions = PrimaryPositions(clock)
    positions.learn(500)
    clock.advance(PrimaryPositions.KEEP - 1)
    assert positions.lag(400) == PrimaryPositions.KEEP - 1
    clock.advance(2)
    assert positions.lag(400) == 0.0  # forgotten: a primary that failed over lower is believed


@routed
def test_a_replica_that_has_not_replayed_a_write_learnt_long_ago_is_skipped(
    settings, monkeypatch, clock
):
    # Cut off from its primary, a replica replays all it received and reports no lag.
    settings.REPLICA_MAX_LAG_SECONDS = 1.0
    now = primary_position()
    monkeypatch.setattr(
        "config.replicas.lag.STATE_SQL", f"SELECT true, true, '{wal.format(now)}', 0::float"
    )
    lag.primary_positions.learn(now + 2**20)
    clock.advance(5.0)
    read_alias()  # the first look
    assert read_alias() == "default"


@routed
def test_replicas_are_read_again_once_a_position_no_primary_reached_is_forgotten(settings, clock):
    # A failover to a standby that had not received everything, and no write since.
    settings.REPLICA_MAX_LAG_SECONDS = 1.0
    lag.primary_positions.learn(primary_position() + 2**30)
    clock.advance(5.0)
    read_alias()  # a look: the replica is short of what was learnt
    assert read_alias() == "default"
    clock.advance(PrimaryPositions.KEEP)
    read_alias()  # a look, once the learnt position is forgotten
    assert read_alias() == "replica1"
