"""The file's last pieces shrink as the queue empties, no smaller than a request is worth on the link: connections
at one speed then end one after another in file order and the sha256 ends with the last byte (a 256 MiB get:
last byte to final name 59 -> 11 ms, benchmarks/download_bench.py). On a link far away (a request waits ~50 ms)
the floor is the planned size and nothing changes."""

from __future__ import annotations

from fixer.transfer.engine import FileJob
from fixer.transfer.pieces import PieceQueue, plan_pieces
from fixer.transfer.settings import MAX_PIECE, MIN_PIECE, REQUEST_SHARE

MiB = 1 << 20


def drain(queue: PieceQueue, floor: int | None) -> list[tuple[int, int]]:
    """Take every piece in rounds of the queue's connections, each round ending before the next begins."""
    taken: list[tuple[int, int]] = []
    while True:
        batch = [p for p in (queue.take(floor) for _ in range(8)) if p is not None]
        if not batch:
            return taken
        for p in batch:
            assert p.end is not None
            taken.append((p.start, p.end))
            p.pos = p.end
            queue.done(p)


def test_with_a_floor_the_last_pieces_shrink_to_it_in_file_order() -> None:
    total = 256 * MiB
    queue = PieceQueue(plan_pieces([(0, total)], total, 8), connections=8)
    taken = drain(queue, MIN_PIECE)
    assert taken[0][0] == 0 and taken[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(taken, taken[1:]))  # every byte once, in file order
    sizes = [b - a for a, b in taken]
    assert max(sizes) == 8 * MiB and min(sizes) >= MIN_PIECE
    # The last round is small (what is left to hash after the last byte), the sizes shrinking to it; the very
    # last piece keeps a rest too small to be a piece of its own.
    assert all(s <= 2 * MIN_PIECE for s in sizes[-8:])
    assert sizes[:-1] == sorted(sizes[:-1], reverse=True)
    assert len(sizes) <= 2 * len(plan_pieces([(0, total)], total, 8))  # a few requests more per connection, no more


def test_without_a_floor_the_plan_is_kept() -> None:
    total = 256 * MiB
    planned = plan_pieces([(0, total)], total, 8)
    queue = PieceQueue(planned, connections=8)
    assert drain(queue, None) == planned


def test_the_floor_follows_what_a_request_costs_on_the_link() -> None:
    job = FileJob.__new__(FileJob)  # only the two measurements matter here
    job._request_wait, job._connection_speed = None, None
    assert job._piece_floor() is None  # nothing measured yet: the plan as it is
    job._request_wait, job._connection_speed = 0.002, 25e6  # localhost, a near mirror
    assert job._piece_floor() == MIN_PIECE
    job._request_wait = 0.050  # a CDN 50 ms away: a piece must last 8 waits, 10 MB at 25 MB/s
    assert job._piece_floor() == int(0.050 * 25e6 * REQUEST_SHARE) > 8 * MiB
    job._request_wait = 5.0
    assert job._piece_floor() == MAX_PIECE
