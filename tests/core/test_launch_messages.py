"""What `ssl run --nproc-per-node N` says after passing stop signals on to its ranks."""

from __future__ import annotations

import signal

from ssl_core.launch import stop_message


def test_one_signal_lets_the_ranks_checkpoint_a_second_says_none_was_written() -> None:
    once = stop_message([signal.SIGTERM], 2)
    assert once.startswith("SIGTERM passed on to all 2 ranks") and "--resume" in once and "without" not in once
    twice = stop_message([signal.SIGINT, signal.SIGINT], 4)
    assert twice.startswith("SIGINT passed on to all 4 ranks")
    assert "without writing a checkpoint" in twice and "last checkpoint written before" in twice
