"""Alerts for Discord (SPEC §14): what the live loop says after each bar, and the sender.

:func:`bar_messages` turns one committed step into messages:

==============================  ==========  =====================================================
event                           severity    from
==============================  ==========  =====================================================
promotion / recovery            INFO        a lifecycle transition to production
warning, probation              WARNING     a lifecycle transition to warning / probation
retirement                      CRITICAL    a lifecycle transition to retired
capital reallocation            INFO        the allocator's records of the bar (old → new)
portfolio risk breach           CRITICAL    kernel alerts: daily-loss breaker, drawdown, bust
risk warning                    WARNING     correlation stress, one pod's risk concentration
daily report                    INFO        each UTC day end (:mod:`orchestra.monitoring.daily`)
trade log                       INFO        a bar with external fills: per symbol the net order,
                                            its fill and fee, and each pod's share
live–model gap                  WARNING     a pod's live NAV crossed the limit against the model
==============================  ==========  =====================================================

**Channels** (the plan's three): the daily report goes to ``ORCHESTRA_DISCORD_WEBHOOK_DAILY``,
the trade log to ``ORCHESTRA_DISCORD_WEBHOOK_TRADES``, everything else to
``ORCHESTRA_DISCORD_WEBHOOK_ALERTS``; each falls back to ``ORCHESTRA_DISCORD_WEBHOOK``. A message
whose channel has no webhook is recorded ``unsent``.

Messages go into the store's **outbox** in the bar's own transaction, so a message exists iff its
bar was committed. :class:`WebhookSender` — a daemon thread with its own SQLite connection —
posts pending messages in order with httpx and marks them sent: the bar loop never waits for the
network. A 429 waits the ``retry_after`` Discord gives (JSON body or ``Retry-After`` header); a
5xx, a timeout or a refused connection is retried with exponential backoff (1 s doubling to 60 s),
without limit. A message marked sent is never sent again, also across restarts; a crash between
Discord's 2xx and the mark (a few milliseconds) can repeat that one message. Without
``ORCHESTRA_DISCORD_WEBHOOK`` messages are still recorded (status ``unsent``), never posted.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestra.kernels.state import ALERT_SEVERITY, ALERT_TYPES, REASONS, STATE_NAMES
from orchestra.results.result import kernel_alert_text

log = logging.getLogger("orchestra.live")
WEBHOOK_ENV = "ORCHESTRA_DISCORD_WEBHOOK"
CHANNEL_ENVS = {
    "alerts": "ORCHESTRA_DISCORD_WEBHOOK_ALERTS",
    "trades": "ORCHESTRA_DISCORD_WEBHOOK_TRADES",
    "daily": "ORCHESTRA_DISCORD_WEBHOOK_DAILY",
}


def channel_of(kind: str) -> str:
    """The channel a message kind goes to: daily, trades or alerts."""
    return {"daily_report": "daily", "trade_log": "trades"}.get(kind, "alerts")


def webhook_urls(environ: dict[str, str]) -> dict[str, str]:
    """Each channel's webhook URL from the environment (its own, else the shared one); channels
    without one are left out."""
    shared = environ.get(WEBHOOK_ENV, "").strip()
    out = {}
    for channel, env in CHANNEL_ENVS.items():
        url = environ.get(env, "").strip() or shared
        if url:
            out[channel] = url
    return out


SEVERITY_COLOR = {"INFO": 0x3498DB, "WARNING": 0xF1C40F, "CRITICAL": 0xE74C3C}


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="minutes")


def message(
    kind: str, severity: str, title: str, text: str, ts: int, fields: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kind": kind,
        "severity": severity,
        "title": title,
        "text": text,
        "ts": int(ts),
        "fields": {k: str(v) for k, v in fields.items()},
    }


def bar_messages(
    engine,
    moved: dict[str, dict[str, np.ndarray]],
    allocations: list,
    before: np.ndarray,
    view=None,
) -> list[dict[str, Any]]:
    """The messages of one committed step (``before``: the pods' fractions before it; ``view``:
    the day's :class:`~orchestra.monitoring.daily.DayView` when its last bar is a day end)."""
    from orchestra.monitoring.daily import format_daily_report

    pod_ids = engine.prepared.pod_ids
    msgs = []
    ev = moved["events"]
    for i in range(ev["bar"].size):
        pid = pod_ids[int(ev["pod"][i])]
        src, dst = STATE_NAMES[int(ev["from"][i])], STATE_NAMES[int(ev["to"][i])]
        ts = engine.timestamp(int(ev["bar"][i]))
        if dst == "production":
            kind, sev = ("promotion" if src == "incubation" else "recovery"), "INFO"
        elif dst == "retired":
            kind, sev = "retirement", "CRITICAL"
        else:
            kind, sev = dst, "WARNING"
        reason = REASONS[int(ev["reason"][i])]
        msgs.append(
            message(
                kind,
                sev,
                f"{pid}: {src} → {dst}",
                reason,
                ts,
                {
                    "pod": pid,
                    "from": src,
                    "to": dst,
                    "value": f"{float(ev['value'][i]):.4g}",
                    "threshold": f"{float(ev['threshold'][i]):.4g}",
                },
            )
        )
    al = moved["alerts"]
    action = engine.prepared.config.orchestrator.risk.drawdown_action
    for i in range(al["bar"].size):
        code = int(al["type"][i])
        kind, severity = ALERT_TYPES[code], ALERT_SEVERITY[code]
        ts = engine.timestamp(int(al["bar"][i]))
        value, thr = float(al["value"][i]), float(al["threshold"][i])
        pid = engine.prepared.pod_ids[int(al["pod"][i])] if int(al["pod"][i]) >= 0 else None
        fields = {"alert": kind, "value": f"{value:.4g}", "threshold": f"{thr:.4g}"}
        if severity == "CRITICAL":  # the account's limits: a portfolio risk breach
            category, title = "risk_breach", f"portfolio risk breach: {kind}"
        else:  # a warning about the portfolio or one pod
            category, title = kind, f"{pid or 'portfolio'}: {kind}"
        if pid is not None:
            fields["pod"] = pid
        body = kernel_alert_text(code, value, thr, pid, action)
        msgs.append(message(category, severity, title, body, ts, fields))
    msgs.extend(trade_log(engine, moved["fills"]))
    if allocations:
        ts = int(allocations[0].timestamp)
        new = {a.pod_id: a.fraction for a in allocations}
        lines = [f"{pid}: {before[p]:.1%} → {new[pid]:.1%}" for p, pid in enumerate(pod_ids)]
        msgs.append(
            message(
                "reallocation",
                "INFO",
                f"capital reallocation ({allocations[0].trigger})",
                "\n".join(lines),
                ts,
                {
                    "method": allocations[0].method,
                    "trigger": allocations[0].trigger,
                    "fallback": allocations[0].fallback or "-",
                    **{pid: f"{new[pid]:.4f}" for pid in pod_ids},
                },
            )
        )
    t = engine.next_bar - 1
    if view is not None:
        msgs.extend(_risk_warnings(view))
        msgs.append(
            message(
                "daily_report",
                "INFO",
                f"daily report {view.day}",
                format_daily_report(view),
                engine.timestamp(t),
                {
                    "equity": f"{view.equity:.2f}",
                    "change": f"{view.change:.6f}",
                    "drawdown": f"{view.drawdown:.6f}",
                    "effective_n": f"{view.effective_n:.4f}",
                },
            )
        )
    return msgs


def trade_log(engine, fills: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One INFO message per bar with external fills: per symbol the net order the exchange saw
    (units, average price, fee) and each pod's share of it, internal crossing included."""
    from orchestra.kernels.state import EXTERNAL

    if not fills or not fills["bar"].size:
        return []
    inp = engine.prepared.inputs
    symbols = engine.prepared.market.symbols
    pod_ids = engine.prepared.pod_ids
    out = []
    for bar in np.unique(fills["bar"]):
        at = fills["bar"] == bar
        slots = fills["slot"][at]
        syms = inp.slot_sym[slots]
        ext = fills["venue"][at] == EXTERNAL
        lines, total_fee = [], 0.0
        for s in np.unique(syms[ext]):
            mine = syms == s
            e = mine & ext
            units = float(fills["units"][at][e].sum())
            notional = float((fills["units"][at][e] * fills["price"][at][e]).sum())
            fee = float(fills["fee"][at][e].sum())
            total_fee += fee
            side = "BUY" if units > 0 else "SELL"
            px = notional / units if units else 0.0
            shares = ", ".join(
                f"{pod_ids[int(inp.slot_pod[k])]} {float(u):+.6g}"
                + ("" if v == EXTERNAL else " (crossed)")
                for k, u, v in zip(
                    slots[mine], fills["units"][at][mine], fills["venue"][at][mine], strict=True
                )
            )
            lines.append(
                f"{side} {abs(units):.6g} {symbols[int(s)]} @ {px:.6g}, fee {fee:.4g}: {shares}"
            )
        if not lines:
            continue
        out.append(
            message(
                "trade_log",
                "INFO",
                f"trades: {len(lines)} order(s)",
                "\n".join(lines),
                engine.timestamp(int(bar)),
                {"orders": len(lines), "fees": f"{total_fee:.4f}"},
            )
        )
    return out


def _risk_warnings(view) -> list[dict[str, Any]]:
    """Correlation stress and risk concentration (once per episode: the risk monitor's rule)."""
    return [
        message(
            "risk_warning",
            a.severity,
            f"risk warning: {a.alert_type}",
            a.message,
            a.timestamp,
            {"alert": a.alert_type, "value": f"{a.current_value:.4g}", "pod": a.pod_id or "-"},
        )
        for a in view.alerts
    ]


def discord_payload(msg: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The webhook JSON: one embed (title, text, fields, severity colour and footer)."""
    text = msg["text"]
    if msg["kind"] == "daily_report":
        text = f"```\n{text}\n```"
    return {
        "username": "orchestra",
        "content": f"[{msg['severity']}] {msg['title']}"[:2000],
        "embeds": [
            {
                "title": msg["title"][:256],
                "description": text[:4096],
                "color": SEVERITY_COLOR.get(msg["severity"], 0),
                "fields": [
                    {"name": k[:256], "value": v[:1024] or "-", "inline": True}
                    for k, v in list(msg["fields"].items())[:25]
                ],
                "footer": {
                    "text": f"{msg['severity']} · {msg['kind']} · run {run_id} · {msg['id']}"
                },
                "timestamp": dt.datetime.fromtimestamp(msg["ts"] / 1000, dt.UTC).isoformat(),
            }
        ],
    }


class WebhookSender(threading.Thread):
    """Posts the outbox's pending messages to a webhook, in order, in the background."""

    def __init__(
        self,
        db_path: str | Path,
        url: str | dict[str, str],
        run_id: str,
        timeout_s: float = 5.0,
        max_backoff_s: float = 60.0,
        poll_s: float = 0.2,
    ):
        super().__init__(name="orchestra-webhook", daemon=True)
        self.db_path = str(db_path)
        # one URL for every channel, or one per channel (see CHANNEL_ENVS)
        self.urls = dict(url) if isinstance(url, dict) else dict.fromkeys(CHANNEL_ENVS, url)
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self._halt = threading.Event()
        self._wake = threading.Event()
        self.sent = 0
        self.failures = 0

    def notify(self) -> None:
        """New messages were committed: look now."""
        self._wake.set()

    def stop(self, flush_s: float = 5.0) -> None:
        """Stop, after trying the pending messages for at most ``flush_s`` seconds."""
        deadline = time.monotonic() + flush_s
        while time.monotonic() < deadline and self.pending() and self.is_alive():
            self._wake.set()
            time.sleep(0.05)
        self._halt.set()
        self._wake.set()
        self.join(timeout=self.timeout_s + 1.0)

    def pending(self) -> int:
        db = sqlite3.connect(self.db_path, timeout=5.0)
        try:
            return int(
                db.execute("SELECT COUNT(*) FROM outbox WHERE status='pending'").fetchone()[0]
            )
        finally:
            db.close()

    def run(self) -> None:
        import json

        import httpx

        db = sqlite3.connect(self.db_path, timeout=5.0, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        backoff = 1.0
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._halt.is_set():
                row = db.execute(
                    "SELECT id, body FROM outbox WHERE status='pending' ORDER BY seq LIMIT 1"
                ).fetchone()
                if row is None:
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
                    continue
                msg = {**json.loads(row[1]), "id": row[0]}
                wait = self._post(client, msg)
                if isinstance(wait, str):  # delivered ("sent") or refused for good ("refused")
                    db.execute(
                        "UPDATE outbox SET status=?, attempts=attempts+1 WHERE id=?", (wait, row[0])
                    )
                    self.sent += wait == "sent"
                    backoff = 1.0
                    continue
                self.failures += 1
                db.execute("UPDATE outbox SET attempts=attempts+1 WHERE id=?", (row[0],))
                if wait < 0:  # not a rate limit: exponential backoff
                    wait, backoff = backoff, min(backoff * 2.0, self.max_backoff_s)
                self._halt.wait(wait)
        db.close()

    def _post(self, client, msg: dict[str, Any]) -> float | str:
        """``"sent"``, ``"refused"`` (a 4xx other than 429: retrying cannot help), or seconds to
        wait before the next try (-1: use the backoff)."""
        import httpx

        url = self.urls.get(channel_of(msg["kind"]))
        if url is None:
            return "unsent"
        try:
            resp = client.post(url, json=discord_payload(msg, self.run_id))
        except httpx.HTTPError as exc:  # the URL holds a secret token: never log it
            text = str(exc)
            for secret in self.urls.values():
                text = text.replace(secret, "<webhook>")
            log.warning("webhook: %s: %s (will retry)", type(exc).__name__, text)
            return -1.0
        if resp.status_code < 300:
            return "sent"
        if resp.status_code == 429:
            retry = resp.headers.get("Retry-After")
            try:
                retry = resp.json().get("retry_after", retry)
            except ValueError:
                pass
            try:
                return max(float(retry), 0.0) if retry is not None else 1.0
            except (TypeError, ValueError):
                return 1.0
        if resp.status_code >= 500:
            log.warning("webhook: HTTP %s (will retry)", resp.status_code)
            return -1.0
        # 4xx other than 429: the message itself is refused (bad URL, payload); do not loop on it
        log.error("webhook refused %s: HTTP %s %s", msg["id"], resp.status_code, resp.text[:200])
        return "refused"
