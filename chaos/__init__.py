"""Chaos campaigns: Toxiproxy control, nemeses, fault schedules and reports."""
