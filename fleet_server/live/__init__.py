"""The live feed of the dashboard: deployment and fleet summaries as server-sent events."""

from fleet_server.live.changes import ChangeTracker, frame
from fleet_server.live.feed import CLOSE, FeedLimits, LiveFeed, Subscription, heartbeat

__all__ = ["CLOSE", "ChangeTracker", "FeedLimits", "LiveFeed", "Subscription", "frame", "heartbeat"]
