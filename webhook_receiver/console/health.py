"""Console pages: health."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console_health", __name__, url_prefix="/admin")
