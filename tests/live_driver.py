"""A live-trading process for the crash tests: the bars of a files folder, real orders through
ccxt to the exchange at ``ORCHESTRA_EXCHANGE_URL`` (the tests' local Binance server), keys from
the environment. ``python tests/live_driver.py CONFIG FOLDER STATE N_BARS``."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from orchestra.config import load_config
    from orchestra.data.ccxt_source import make_exchange
    from orchestra.live.feeds import ReplayFeed
    from orchestra.live.session import LiveSession
    from orchestra.live.trading import CcxtBroker, keys_from_env

    config, folder, state, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = load_config(config)
    feed = ReplayFeed(cfg, folder)
    session = LiveSession.open(
        feed.config, state, feed.label, feed.start_ms, feed.warmup, identity=cfg, mode="live"
    )
    key, secret = keys_from_env()
    market = cfg.data.market
    ex = make_exchange("binance", market, apiKey=key, secret=secret, timeout=1000)
    ex.enableRateLimit = False  # the tests' local server: no need to pace the calls
    ex.load_markets()
    session.start_trading(
        CcxtBroker(ex, session.store, str(session.meta["run_id"]), backoff_s=0.01, market=market)
    )
    last = session.last_ts if session.last_ts is not None else session.start_ms - 1
    done = session.next_bar
    session.run(itertools.islice(feed.bars_after(last), max(n - done, 0)))
    session.close()
    print(f"done {session.next_bar}")


if __name__ == "__main__":
    main()
