"""Pure decisions: who may, which status may follow, when an SLA is due (no I/O, no clock)."""
