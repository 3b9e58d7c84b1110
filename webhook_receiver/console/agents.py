"""Console pages: agents."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console_agents", __name__, url_prefix="/admin")
