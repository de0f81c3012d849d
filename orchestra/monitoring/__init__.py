"""Monitoring of the live loop (SPEC §14): Prometheus metrics, Discord alerts, the daily report.

It hooks into :class:`~orchestra.live.session.LiveSession` after each bar through a
:class:`Monitor`; the kernels are not touched. See ``docs/monitoring.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orchestra.monitoring.daily import (
    DayView,
    day_view_from_engine,
    day_view_from_result,
    format_daily_report,
)

__all__ = [
    "DayView",
    "Monitor",
    "day_view_from_engine",
    "day_view_from_result",
    "format_daily_report",
]


class Monitor:
    """Alerts (into the store's outbox, in the bar's transaction) and metrics for a session.

    ``metrics``: a :class:`~orchestra.monitoring.prom.LiveMetrics` or None; ``sender``: a
    :class:`~orchestra.monitoring.notify.WebhookSender` (started by the caller) or None — without
    one, messages are recorded as ``unsent``.
    """

    def __init__(self, metrics=None, sender=None):
        self.metrics = metrics
        self.sender = sender
        self._view = None

    def outbox_status(self, msg: dict[str, Any]) -> str:
        """``pending`` when the message's channel has a webhook, else ``unsent``."""
        from orchestra.monitoring.notify import channel_of

        if self.sender is None or channel_of(msg["kind"]) not in self.sender.urls:
            return "unsent"
        return "pending"

    def messages(
        self, engine, moved, allocations, before: np.ndarray, gap=None
    ) -> list[dict[str, Any]]:
        """The bar's messages; ``gap`` (a :class:`~orchestra.live.session.LiveGap`) adds the
        live–model gap line to the daily report."""
        from orchestra.monitoring.notify import bar_messages

        t = engine.next_bar - 1
        self._view = day_view_from_engine(engine, t) if engine.is_day_end(t) else None
        if self._view is not None and gap is not None:
            import dataclasses

            live_gap = {
                pid: float(g) for pid, g in zip(engine.prepared.pod_ids, gap.nav_gap, strict=True)
            }
            self._view = dataclasses.replace(self._view, live_gap=live_gap)
        return bar_messages(engine, moved, allocations, before, self._view)

    def after_commit(
        self, session, moved, seconds: float, bars: int, order_errors: int = 0
    ) -> None:
        if self.sender is not None:
            self.sender.notify()
        if self.metrics is not None:
            pending = self.sender.pending() if self.sender is not None else 0
            self.metrics.update(
                session.engine,
                self._view,
                moved["fills"],
                seconds,
                bars,
                order_errors=order_errors,
                pending=pending,
                gap=session.gap if session.model is not None else None,
                margin=session.meta.get("margin"),
            )

    def start(self, session) -> None:
        """Publish the restored state at once (before the next bar arrives)."""
        if self.metrics is not None and session.engine is not None:
            t = session.engine.next_bar - 1
            day_end = session.engine.is_day_end(t)
            view = day_view_from_engine(session.engine, t) if day_end else None
            gap = session.gap if session.model is not None else None
            self.metrics.update(session.engine, view, gap=gap)

    def close(self, flush_s: float = 5.0) -> None:
        if self.sender is not None:
            self.sender.stop(flush_s)
        if self.metrics is not None:
            self.metrics.close()
