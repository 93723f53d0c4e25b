"""The live operator dashboard: a page, a websocket that streams the saga event log to it, and
the one tailer per web process that follows the log (docs/architecture.md §7)."""
