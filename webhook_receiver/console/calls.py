"""Console pages: calls."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console_calls", __name__, url_prefix="/admin")
