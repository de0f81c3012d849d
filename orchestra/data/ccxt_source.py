"""The ``ccxt`` source: paginated download, rate limits, retries, and a parquet cache.

* Pagination: ``fetch_ohlcv(symbol, timeframe, since, limit)`` from ``since`` forward, each page
  starting one bar after the last one received, until a page brings nothing new or ``until`` is
  reached.
* Rate limits: the exchange is created with ``enableRateLimit=True`` (ccxt's own throttle).
* Retries: ccxt ``OperationFailed`` — its ``NetworkError`` family (timeouts,
  ``RateLimitExceeded``, ``DDoSProtection``, ``ExchangeNotAvailable``) and unknown server-side
  failures (Binance ``-1000``) — are retried with exponential backoff; ``ExchangeError`` (a bad
  symbol, a rejected request) propagates at once. An exchange that cannot be reached at all (its
  host does not resolve, the connection is refused) is tried once more after a short pause, not
  five times: then :class:`SourceUnavailable` says which exchange, which endpoint and why, in one
  line. When the retries of a transient failure run out, the same error is raised (its
  ``__cause__`` is the ccxt exception).
* Cache: ``<cache>/<exchange>/<market>/<BASE-QUOTE>_<tf>.parquet``. A second run reads the cache
  and only fetches the missing tail (from one bar after the last cached bar).
* A bar still open at download time (``open_time + tf > now``) is dropped: it is not final.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from orchestra.data.files import symbol_to_stem
from orchestra.data.schema import BAR_COLUMNS, BAR_SCHEMA
from orchestra.timeframes import file_suffix, timeframe_ms

Progress = Callable[[str, int], None]
CONNECT_RETRIES = 1  # an unreachable host is tried once more, then reported


class SourceUnavailable(RuntimeError):
    """The exchange cannot be used: unknown id, unreachable, or failing after the retries."""


def unknown_exchange_message(exchange_id: str) -> str | None:
    """None if ``exchange_id`` is a ccxt exchange, else a message listing close matches."""
    import difflib

    import ccxt

    if exchange_id in ccxt.exchanges:
        return None
    close = difflib.get_close_matches(exchange_id.lower(), ccxt.exchanges, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see ccxt.exchanges for the ids"
    return f"unknown ccxt exchange {exchange_id!r}: {hint}"


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    return seen


def _unreachable(exc: BaseException) -> bool:
    """Whether a ccxt error means the host cannot be reached at all (not a slow or busy one)."""
    text = f"{exc} {_root_cause(exc)}".lower()
    needles = (
        "failed to resolve",
        "name or service not known",
        "nodename nor servname",
        "connection refused",
        "temporary failure in name resolution",
        "network is unreachable",
        "no route to host",
    )
    return any(n in text for n in needles)


def describe_failure(exc: BaseException) -> str:
    """One line: the exchange and endpoint (from ccxt's message) and the underlying cause."""
    where = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    root = _root_cause(exc)
    text = str(root).lower()
    if "resolve" in text or "name or service" in text or "name resolution" in text:
        cause = "the host name does not resolve (no network, or DNS is down)"
    elif "refused" in text:
        cause = "the connection was refused"
    elif "timed out" in text or "timeout" in type(root).__name__.lower():
        cause = "the request timed out"
    elif root is exc:
        cause = type(exc).__name__
    else:
        cause = f"{type(root).__name__}: {str(root).splitlines()[0][:160]}"
    return f"{where}: {cause}"


URL_ENV = "ORCHESTRA_EXCHANGE_URL"


def make_exchange(exchange_id: str, market: str = "spot", **options: Any) -> Any:
    """A ccxt exchange instance with the rate limiter on (API keys only when passed in
    ``options``: ``apiKey``, ``secret``).

    ``ORCHESTRA_EXCHANGE_URL`` points a Binance-style client at another host that speaks the
    same REST protocol (an exchange simulator, a testnet): spot's ``/api/v3`` and the USDⓈ-M
    perpetuals' ``/fapi/v1``, ``/fapi/v2`` and ``/fapi/v3``.

    Raises :class:`SourceUnavailable` for an unknown id, listing close matches.
    """
    import ccxt

    problem = unknown_exchange_message(exchange_id)
    if problem is not None:
        raise SourceUnavailable(problem)
    cls = getattr(ccxt, exchange_id)
    extra = dict(options.pop("options", {}))
    url = os.environ.get(URL_ENV, "").strip()
    if url:  # an exchange simulator or testnet speaking the exchange's REST protocol
        types = ["spot"] if market == "spot" else ["linear"]
        extra.update(fetchCurrencies=False, fetchMargins=False, fetchMarkets={"types": types})
    exchange = cls(
        {
            "enableRateLimit": True,
            "options": {"defaultType": market, **extra},
            **options,
        }
    )
    if url:
        api = exchange.urls["api"]
        for key, path in (
            ("public", "/api/v3"),
            ("private", "/api/v3"),
            ("fapiPublic", "/fapi/v1"),
            ("fapiPublicV2", "/fapi/v2"),
            ("fapiPrivate", "/fapi/v1"),
            ("fapiPrivateV2", "/fapi/v2"),
            ("fapiPrivateV3", "/fapi/v3"),
        ):
            if key in api:
                api[key] = url.rstrip("/") + path
    return exchange


def fetch_with_retry(
    call: Callable[[], Any],
    retries: int = 5,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run ``call``; on a ccxt ``OperationFailed`` wait ``backoff·2^k`` seconds and try again.

    An unreachable host gets :data:`CONNECT_RETRIES` more tries only. When the tries run out,
    raises :class:`SourceUnavailable` (one readable line; the ccxt error is its cause).
    """
    import ccxt

    limit = retries
    for attempt in range(retries + 1):
        try:
            return call()
        except ccxt.OperationFailed as exc:
            if _unreachable(exc):
                limit = min(limit, CONNECT_RETRIES)
            if attempt >= limit:
                tries = attempt + 1
                raise SourceUnavailable(
                    f"{describe_failure(exc)} (after {tries} tr{'y' if tries == 1 else 'ies'})"
                ) from exc
            sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def download(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since_ms: int,
    until_ms: int | None = None,
    limit: int = 1000,
    retries: int = 5,
    backoff: float = 1.0,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Download closed bars of ``symbol`` from ``since_ms`` (inclusive) to ``until_ms`` (exclusive)."""
    step = timeframe_ms(timeframe)
    now = int(time.time() * 1000)
    stop = min(until_ms if until_ms is not None else now, now)
    rows: list[list[float]] = []
    cursor = since_ms
    tf = file_suffix(timeframe)
    while cursor < stop:
        since = cursor
        page = fetch_with_retry(
            lambda: exchange.fetch_ohlcv(symbol, tf, since=since, limit=limit),  # noqa: B023
            retries,
            backoff,
        )
        page = [r for r in page if r[0] >= cursor and r[0] < stop]
        if not page:
            break
        rows.extend(page)
        cursor = int(page[-1][0]) + step
        if progress is not None:
            progress(symbol, len(page))
    rows = [r for r in rows if r[0] + step <= now]  # drop a bar that has not closed yet
    frame = pl.DataFrame(
        [r[:6] for r in rows],
        schema=["timestamp", "open", "high", "low", "close", "volume"],
        orient="row",
    )
    return (
        frame.with_columns(
            pl.col("timestamp").cast(pl.Int64).cast(pl.Datetime("ms", "UTC")),
            pl.lit(symbol).alias("symbol"),
            *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")],
        )
        .select(BAR_COLUMNS)
        .unique("timestamp", keep="last")
        .sort("timestamp")
    )


def cache_file(cache: Path, exchange_id: str, market: str, symbol: str, timeframe: str) -> Path:
    return (
        Path(cache).expanduser()
        / exchange_id
        / market
        / f"{symbol_to_stem(symbol)}_{file_suffix(timeframe)}.parquet"
    )


def fetch_cached(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since_ms: int,
    cache: Path,
    until_ms: int | None = None,
    market: str = "spot",
    progress: Progress | None = None,
    **kw: Any,
) -> pl.DataFrame:
    """Bars from the parquet cache, fetching only what is missing after its last bar.

    Bars before the cache's first bar are fetched too when ``since_ms`` is earlier. The cache
    file is replaced atomically (write to a temp file, then rename).
    """
    path = cache_file(cache, exchange.id, market, symbol, timeframe)
    step = timeframe_ms(timeframe)
    empty = pl.DataFrame(schema=BAR_SCHEMA)  # type: ignore[arg-type]
    cached = pl.read_parquet(path) if path.is_file() else empty
    parts = [cached]
    if cached.height:
        epochs = cached["timestamp"].dt.epoch("ms")
        first, last = int(epochs.min()), int(epochs.max())  # type: ignore[arg-type]
        if since_ms < first:
            parts.append(
                download(exchange, symbol, timeframe, since_ms, first, progress=progress, **kw)
            )
        parts.append(
            download(exchange, symbol, timeframe, last + step, until_ms, progress=progress, **kw)
        )
    else:
        parts.append(
            download(exchange, symbol, timeframe, since_ms, until_ms, progress=progress, **kw)
        )
    merged = pl.concat(parts).unique("timestamp", keep="last").sort("timestamp")
    if merged.height > cached.height:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        merged.write_parquet(tmp)
        tmp.replace(path)
    out = merged.filter(pl.col("timestamp").dt.epoch("ms") >= since_ms)
    if until_ms is not None:
        out = out.filter(pl.col("timestamp").dt.epoch("ms") < until_ms)
    return out


def fetch_funding(
    exchange: Any,
    symbol: str,
    since_ms: int,
    until_ms: int,
    cache: Path,
    retries: int = 5,
    backoff: float = 1.0,
) -> pl.DataFrame:
    """Funding-rate history ``timestamp, rate`` via ccxt, cached as parquet (only the tail is fetched)."""
    path = Path(cache).expanduser() / exchange.id / "funding" / f"{symbol_to_stem(symbol)}.parquet"
    schema: dict[str, pl.DataType] = {"timestamp": pl.Datetime("ms", "UTC"), "rate": pl.Float64()}
    cached = pl.read_parquet(path) if path.is_file() else pl.DataFrame(schema=schema)
    cursor = int(cached["timestamp"].dt.epoch("ms").max()) + 1 if cached.height else since_ms  # type: ignore[arg-type]
    rows: list[dict] = []
    while cursor < until_ms:
        start = cursor
        page = fetch_with_retry(
            lambda: exchange.fetch_funding_rate_history(symbol, since=start, limit=1000),  # noqa: B023
            retries,
            backoff,
        )
        page = [r for r in page if r["timestamp"] >= start]
        if not page:
            break
        rows += page
        cursor = int(page[-1]["timestamp"]) + 1
    new = pl.DataFrame(
        {
            "timestamp": [r["timestamp"] for r in rows],
            "rate": [float(r["fundingRate"]) for r in rows],
        },
        schema={"timestamp": pl.Int64, "rate": pl.Float64},
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
    merged = pl.concat([cached, new]).unique("timestamp", keep="last").sort("timestamp")
    if new.height:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        merged.write_parquet(tmp)
        tmp.replace(path)
    return merged.filter(
        (pl.col("timestamp").dt.epoch("ms") >= since_ms)
        & (pl.col("timestamp").dt.epoch("ms") < until_ms)
    )
