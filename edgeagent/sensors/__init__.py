"""Sensors: serial and system sensors whose readings feed the reactors (and the broker).

Cores (pure): ``model`` (readings, fields, drop reasons), ``framing`` (bytes to frames),
``parsers`` and ``nmea`` (frames to values), ``filters`` (ESPHome's filter chain, taking
``now``), ``system`` (the board's metrics from /proc and /sys texts) and ``simulated`` (a
deterministic demo sensor).
"""
