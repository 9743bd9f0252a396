"""deepbg-live: real-time background replacement for webcams and video."""

__version__ = "0.1.0"
