"""DeskPilot: support-ticket triage with calibrated confidence and safe auto-routing."""

__version__ = "0.1.0"
