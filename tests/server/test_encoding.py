"""Online and offline encodings agree: a request encodes to the same record as its row in a transaction file."""

from __future__ import annotations

import numpy as np

from features import FeatureConfig, encode_frame
from loadtest import frame_to_requests
from models import SimulationConfig, simulate
from server._requests import RequestValidator, encode_requests


def test_requests_encode_like_the_rows_they_came_from() -> None:
    """encode_requests (server) equals encode_frame (training, backtests) field by field on simulated data."""
    frame = simulate(SimulationConfig(accounts=300, days=20, seed=3)).head(3000).reset_index(drop=True)
    config = FeatureConfig()
    requests = frame_to_requests(frame)
    validator = RequestValidator(config, max_skew_days=100_000)
    assert not [v for r in requests[:500] for v in validator.score_request(r, 0)]
    online = encode_requests(requests, config)
    offline = encode_frame(frame, config)
    assert online.dtype == offline.dtype
    for name in online.dtype.names or ():
        mismatched = np.flatnonzero(online[name] != offline[name])
        assert not mismatched.size, f"{name}: row {mismatched[0]} online {online[name][mismatched[0]]} " \
                                    f"offline {offline[name][mismatched[0]]}"
