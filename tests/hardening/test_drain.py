"""Graceful stop: calls already in flight are answered, later ones are refused cleanly, acknowledged ones are kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from outpost.v1 import outpost_pb2 as pb

from tests.server.conftest import make_settings, start_server, txn


def test_stop_drains_calls_in_flight_and_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    """Stopping under a burst: every call is OK or UNAVAILABLE, and a restart holds exactly the OK ones."""
    server = start_server(make_settings(tmp_path, durability="fsync", grace_seconds=10.0, max_in_flight=100_000))
    accounts = [f"acct-drain-{k}" for k in range(300)]
    futures = [server.scoring.Score.future(txn(a), timeout=60) for a in accounts]
    stopping = asyncio.run_coroutine_threadsafe(server.app.stop(grace=10), server.loop)
    codes = []
    for future in futures:
        try:
            future.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as err:
            codes.append(err.code())
    stopping.result(timeout=60)
    server.stopped = True
    server.channel.close()
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(timeout=30)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, set(codes)
    assert codes.count(grpc.StatusCode.OK) > 0

    restarted = start_server(make_settings(tmp_path, durability="fsync"))
    try:
        for account, code in zip(accounts[::10], codes[::10], strict=True):
            probe = restarted.scoring.Score(txn(account, dry_run=True, explain=True), timeout=30)
            assert probe.features["txn_count_total"] == (1 if code == grpc.StatusCode.OK else 0), (account, code)
        assert restarted.scoring.Score(txn("acct-drain-after"), timeout=30).action == pb.ACTION_ALLOW
    finally:
        restarted.stop()
