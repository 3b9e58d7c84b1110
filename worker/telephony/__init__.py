"""Telephony platform API clients: click-to-call, one module per platform."""
